"""Series keys: a cell, optionally narrowed to a UE and/or a slice — `cell`, `cell|ue=UE`, `cell|s=SST.SD`.

Ids are 1–64 of [A-Za-z0-9_.:-], so the separator `|` never occurs inside one.
"""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SEPARATOR = "|"


def series_key(cell_id: str, ue_id: str | None = None, sst: int | None = None, sd: int | None = None) -> str:
    """The series key: the cell id alone for cell-level reports, else cell|ue=…|s=sst.sd."""
    key = cell_id
    if ue_id:
        key += f"{SEPARATOR}ue={ue_id}"
    if sst is not None:
        key += f"{SEPARATOR}s={sst}" + (f".{sd}" if sd is not None else "")
    return key


def parse_series(key: str) -> tuple[str, tuple[int, int | None] | None]:
    """(cell id, (sst, sd) or None) of a series key."""
    if SEPARATOR not in key:  # a plain cell id, the common case
        return key, None
    cell, _, rest = key.partition(SEPARATOR)
    for part in rest.split(SEPARATOR):
        if part.startswith("s="):
            sst, _, sd = part[2:].partition(".")
            return cell, (int(sst), int(sd) if sd else None)
    return cell, None


def cell_of(key: str) -> str:
    """The cell id of a series key."""
    return key.partition(SEPARATOR)[0]


def ue_of(key: str) -> str | None:
    """The UE id of a series key, or None."""
    for part in key.split(SEPARATOR)[1:]:
        if part.startswith("ue="):
            return part[3:]
    return None
