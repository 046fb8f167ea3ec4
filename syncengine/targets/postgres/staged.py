"""A table write prepared for the staged apply, in its own module so that :mod:`.apply` (which
prepares it) and :mod:`.direct` and :mod:`.keyless` (which read it) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

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
    #: the original changes with their ``__row``, for rejected rows: a Polars frame, or the
    #: Arrow table it is made of only when a row is rejected (:attr:`original_frame`)
    original: pl.DataFrame | pa.Table

    @property
    def original_frame(self) -> pl.DataFrame:
        if isinstance(self.original, pl.DataFrame):
            return self.original
        frame = pl.from_arrow(self.original)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def keys(self, key: list[str], rows: list[int]) -> pl.DataFrame:
        """The ``key`` columns of the original changes numbered ``rows``."""
        if isinstance(self.original, pl.DataFrame):
            return self.original.filter(pl.col("__row").is_in(rows)).select(key)
        chosen = pc.is_in(self.original.column("__row"), pa.array(rows, pa.int64()))
        frame = pl.from_arrow(self.original.select(key).filter(chosen))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def without(self, mask: pa.Array) -> Staged:
        """The rows where ``mask`` is false, numbered 0.. again (the staged statements and
        the bisection address rows by ``__row``)."""
        keep = pc.invert(mask)
        rows = self.rows.filter(keep)
        number = pl.int_range(0, rows.num_rows, dtype=pl.Int64, eager=True)
        rows = rows.set_column(rows.column_names.index("__row"), "__row", number.to_arrow())
        original: pl.DataFrame | pa.Table
        if isinstance(self.original, pl.DataFrame):
            chosen = pl.from_arrow(keep)
            assert isinstance(chosen, pl.Series)
            original = self.original.filter(chosen).with_columns(number.alias("__row"))
        else:
            original = self.original.filter(keep)
            at = original.column_names.index("__row")
            original = original.set_column(at, "__row", number.to_arrow())
        return Staged(rows, self.columns, self.patterns, self.truncate, original)
