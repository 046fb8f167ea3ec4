"""``target: {type: sqlitefile, path: …}``."""

from __future__ import annotations

from typing import Literal

from syncengine.config.base import TargetConfigBase


class SQLiteFileTargetConfig(TargetConfigBase):
    type: Literal["sqlitefile"]
    path: str
    """The SQLite file that holds every target table (created if missing)."""
