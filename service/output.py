"""The result document of `ms3m eval` and every `ms3m bench …`, and how the command line prints it.

A result is a dict {"benchmark", "rows": [{column: value}], optional "title", "columns", "summary",
"settings", …}. Printed as a table; with --json the table goes to stderr and stdout carries the whole
result as one JSON document, last. Torch-free, imported by service/cli.py and bench/cli.py.
"""

from __future__ import annotations

import json
from typing import Any


def print_result(result: dict[str, Any], as_json: bool) -> None:
    """A table of result["rows"] (result["columns"], default the first row's keys) and its summary; with
    as_json the table goes to stderr and stdout gets the result as one JSON document."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=as_json)  # with --json the table goes to stderr so stdout is pure JSON
    table = Table(title=result.get("title") or f"ms3m bench {result.get('benchmark', '')}".strip())
    cols = result.get("columns") or (list(result["rows"][0]) if result.get("rows") else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "runtime", "name", "kind") else "right")
    for row in result.get("rows", []):
        table.add_row(*(_fmt(row.get(c)) for c in cols))
    console.print(table)
    for k, v in (result.get("summary") or {}).items():
        console.print(f"  {k}: {_fmt(v)}")
    if as_json:
        print(json.dumps(result, indent=None, default=str))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return "" if v is None else str(v)
