"""Where the real (shared, never committed) data lives: $MS3M_DATA_DIR, else ../shared/data next to the repo."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MS3M_DATA_DIR"


def data_dir() -> Path:
    """The shared real-data folder: $MS3M_DATA_DIR, else <repo>/../shared/data (it may not exist)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()


def find_data(relative: str) -> Path:
    """data_dir() / relative; FileNotFoundError naming the place it looked and how to point elsewhere."""
    path = data_dir() / relative
    if not path.exists():
        how = f"${DATA_ENV}={os.environ[DATA_ENV]}" if os.environ.get(DATA_ENV) else \
            f"the default next to the repository; set ${DATA_ENV} to point elsewhere"
        raise FileNotFoundError(f"dataset not found: looked for {path} ({how})")
    return path
