"""A table write prepared for the staged apply, in its own module so that :mod:`.apply` (which
prepares it) and :mod:`.direct` and :mod:`.keyless` (which read it) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl


@dataclass(frozen=True)
class Staged:
    """A write prepared for staging: rows (``__row``, ``__op``, ``__pat`` + data columns)."""

    rows: pa.Table
    columns: list[str]
    #: pattern id → the columns that pattern sends (key first)
    patterns: dict[int, list[str]]
    truncate: bool
    #: the original changes, for rejected rows
    original: pl.DataFrame
