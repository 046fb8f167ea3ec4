"""Compare what a mapping should produce with what the target holds (``syncengine verify``).

Both sides arrive as Polars frames with the mapped columns. The comparison is vectorized:
per-row hashes over a canonical text form of every column, summed per key bucket (a key-range
fingerprint), and only rows in buckets whose fingerprints differ are joined and diffed field by
field with deepdiff. Counts, missing keys, extra keys and differing fields are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from deepdiff import DeepDiff

from syncengine.codecs import pg_temporal

BUCKETS = 256
MAX_DETAILED = 50


@dataclass
class TableDiff:
    table: str
    source_rows: int
    target_rows: int
    missing: list[Any] = field(default_factory=list)
    """Keys in the source but not in the target."""
    extra: list[Any] = field(default_factory=list)
    """Keys in the target but not in the source."""
    different: list[dict[str, Any]] = field(default_factory=list)
    """``{"key": …, "fields": {field: {"source": …, "target": …}}}``"""
    buckets_checked: int = 0
    buckets_differing: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "ok": self.ok,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "missing_in_target": self.missing,
            "extra_in_target": self.extra,
            "different": self.different,
            "buckets_checked": self.buckets_checked,
            "buckets_differing": self.buckets_differing,
        }


def _extreme_dates(frames: list[pl.DataFrame], columns: list[str]) -> set[str]:
    """Date/timestamp columns holding, on either side, values Polars cannot format (Postgres
    infinity, BC): both sides then take :func:`pg_temporal.to_text` for them."""
    out = set()
    for name in columns:
        for frame in frames:
            dtype = frame.schema.get(name)
            dated = dtype == pl.Date or (isinstance(dtype, pl.Datetime) and dtype.time_unit == "us")
            if dated and not pg_temporal.is_ordinary(frame[name].to_arrow()):
                out.add(name)
    return out


def _canonical(
    frame: pl.DataFrame, columns: list[str], extreme: set[str] | None = None
) -> pl.DataFrame:
    """Every column as text, so both sides hash identically whatever their physical types."""
    exprs = []
    for name in columns:
        dtype = frame.schema[name]
        col = pl.col(name)
        if name in (extreme or ()) and (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
            text = pg_temporal.to_text(frame[name].to_arrow())
            exprs.append(pl.lit(pl.Series(name, text, dtype=pl.String)).alias(name))
        elif isinstance(dtype, pl.Struct | pl.List | pl.Array):
            exprs.append(_json(col).alias(name))
        elif dtype == pl.Null:
            exprs.append(pl.lit(None, pl.String).alias(name))
        elif dtype == pl.Binary:  # bytes need not be UTF-8
            exprs.append(col.bin.encode("hex").alias(name))
        else:
            exprs.append(col.cast(pl.String).alias(name))
    return frame.select(exprs)


def _json(col: pl.Expr) -> pl.Expr:
    wrapped = pl.struct(col.alias("v")).struct.json_encode()
    return pl.when(col.is_null()).then(None).otherwise(wrapped)


def align(source: pl.DataFrame, target: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give the target the source's columns and types (cast non-strictly)."""
    columns = source.columns
    exprs = []
    for name in columns:
        dtype = source.schema[name]
        if name not in target.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
        elif target.schema[name] == dtype or isinstance(dtype, pl.Struct | pl.List):
            exprs.append(pl.col(name))
        else:
            exprs.append(pl.col(name).cast(dtype, strict=False))
    return source, target.select(exprs)


def compare_frames(
    table: str, source: pl.DataFrame, target: pl.DataFrame, key: list[str]
) -> TableDiff:
    if not key:
        return compare_multisets(table, source, target)
    source, target = align(source, target)
    columns = source.columns
    values = [c for c in columns if c not in key]
    extreme = _extreme_dates([source, target], values)
    src = pl.concat([source.select(key), _canonical(source, values, extreme)], how="horizontal")
    tgt = pl.concat([target.select(key), _canonical(target, values, extreme)], how="horizontal")
    diff = TableDiff(table, source.height, target.height)

    def fingerprint(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            (pl.struct(key).hash(7) % BUCKETS).alias("__bucket"),
            pl.struct(columns).hash(11).alias("__row"),
        )

    src, tgt = fingerprint(src), fingerprint(tgt)
    per_bucket = [
        frame.group_by("__bucket").agg(
            pl.len().alias(f"__n{side}"), (pl.col("__row") % (1 << 32)).sum().alias(f"__h{side}")
        )
        for side, frame in (("s", src), ("t", tgt))
    ]
    joined = per_bucket[0].join(per_bucket[1], on="__bucket", how="full", coalesce=True)
    bad = joined.filter(
        (pl.col("__ns") != pl.col("__nt")).fill_null(True)
        | (pl.col("__hs") != pl.col("__ht")).fill_null(True)
    )["__bucket"]
    diff.buckets_checked = joined.height
    diff.buckets_differing = bad.len()
    if not bad.len():
        return diff
    src_rows = src.filter(pl.col("__bucket").is_in(bad.implode()))
    tgt_rows = tgt.filter(pl.col("__bucket").is_in(bad.implode()))
    both = src_rows.join(
        tgt_rows, on=key, how="full", suffix="__t", coalesce=True, nulls_equal=True
    )
    missing = both.filter(pl.col("__row__t").is_null())
    extra = both.filter(pl.col("__row").is_null())
    changed = both.filter(
        pl.col("__row").is_not_null()
        & pl.col("__row__t").is_not_null()
        & (pl.col("__row") != pl.col("__row__t"))
    )
    diff.missing = _keys(missing, key)
    diff.extra = _keys(extra, key)
    for row in changed.head(MAX_DETAILED).iter_rows(named=True):
        fields = {}
        for name in values:
            left, right = _decode(row[name]), _decode(row[f"{name}__t"])
            if DeepDiff(left, right, ignore_order=False):
                fields[name] = {"source": left, "target": right}
        diff.different.append({"key": _key_value(row, key), "fields": fields})
    if changed.height > MAX_DETAILED:
        diff.different.append({"key": None, "fields": {}, "more": changed.height - MAX_DETAILED})
    return diff


def compare_multisets(table: str, source: pl.DataFrame, target: pl.DataFrame) -> TableDiff:
    """A keyless table: the rows are compared as multisets (each distinct row and how many
    times it occurs). ``missing`` / ``extra`` list the rows (as objects) the target has too few
    / too many copies of, with ``copies`` saying how many."""
    source, target = align(source, target)
    columns = source.columns
    counted = [
        _canonical(frame, columns).group_by(columns).agg(pl.len().cast(pl.Int64).alias(name))
        for frame, name in ((source, "__ns"), (target, "__nt"))
    ]
    both = counted[0].join(counted[1], on=columns, how="full", coalesce=True, nulls_equal=True)
    gap = (pl.col("__ns").fill_null(0) - pl.col("__nt").fill_null(0)).alias("__gap")
    both = both.with_columns(gap).filter(pl.col("__gap") != 0)
    diff = TableDiff(table, source.height, target.height)

    def listed(frame: pl.DataFrame, sign: int) -> list[Any]:
        return [
            {**{c: _decode(row[c]) for c in columns}, "copies": sign * row["__gap"]}
            for row in frame.head(MAX_DETAILED).iter_rows(named=True)
        ]

    diff.missing = listed(both.filter(pl.col("__gap") > 0), 1)
    diff.extra = listed(both.filter(pl.col("__gap") < 0), -1)
    return diff


def _keys(frame: pl.DataFrame, key: list[str]) -> list[Any]:
    return [
        _key_value(row, key) for row in frame.select(key).head(MAX_DETAILED).iter_rows(named=True)
    ]


def _key_value(row: dict[str, Any], key: list[str]) -> Any:
    return row[key[0]] if len(key) == 1 else [row[k] for k in key]


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith('{"v":'):
        try:
            return json.loads(value)["v"]
        except ValueError:
            return value
    return value
