"""What ``validate`` checks before a pipeline writes to a SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

from syncengine_sqlitefile.config import SQLiteFileTargetConfig

SQLITE_HEADER = b"SQLite format 3\x00"


def check_target(config: object) -> list[str]:
    assert isinstance(config, SQLiteFileTargetConfig)
    path = Path(config.path)
    if path.is_dir():
        return [f"path: '{path}' is a folder; name a file"]
    if path.exists():
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            return [f"path: '{path}' is not a SQLite database; name a new file or a database"]
        return [] if os.access(path, os.W_OK) else [f"path: '{path}' is not writable"]
    folder = next((p for p in path.parents if p.exists()), Path("."))
    return [] if os.access(folder, os.W_OK) else [f"path: '{folder}' is not writable"]
