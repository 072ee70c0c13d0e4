"""The bundle directory format shared by the exporter (`models/export`) and the loader (`service/runtime`).

A bundle is a directory with MANIFEST (JSON: format, version, model, KPIs, normalization, graphs with their
sha256 …) and the files it names; README, "Bundles and runtimes", describes the fields.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BUNDLE_FORMAT = "ms3m-bundle"
BUNDLE_VERSION = 2  # 2: the MS³M gate graph is expert-major and bundles carry the fused graph (README, "Serving MS³M")
MANIFEST = "config.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
