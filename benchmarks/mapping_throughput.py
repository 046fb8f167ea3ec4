"""Mapping throughput: a 1M-row batch, 10 computed fields and a filter, vs hand-written Polars.

The mapping (SQL expressions compiled by :mod:`syncengine.mappings`) and the baseline (the same
filter and fields written directly as Polars expressions) start from the same ChangeBatch and
end with an Arrow table, so both pay the same conversions. The mapping additionally detects
failed casts per row (dead letters) and handles ops; that is the price being measured.
Each side runs several times, alternating; the median counts. Goal: ratio <= 1.2.

Run: ``python -m benchmarks.mapping_throughput [--quick]`` (prints JSON).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from syncengine.mappings import compile_mapping

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig

FIELDS = {
    "_id": "id",
    "email": "lower(email)",
    "total": "amount_cents / 100.0",
    "line_value": "qty * price",
    "status": "upper(status)",
    "day": "date_trunc('day', created_at)",
    "year": "extract(year from created_at)",
    "note_number": "notes::int",
    "size": "case when amount_cents > 50000 then 'big' else 'small' end",
    "code": "concat(country, '-', id)",
    "discounted": "coalesce(discount, 0) * price",
}
FILTER = "status <> 'draft' and amount_cents >= 100"


def make_batch(rows: int, seed: int = 1) -> ChangeBatch:
    rng = np.random.default_rng(seed)
    created = pa.array(
        (np.datetime64("2024-01-01") + rng.integers(0, 86400 * 365, rows).astype("m8[s]")).astype(
            "M8[us]"
        ),
        pa.timestamp("us", tz="UTC"),
    )
    discount = rng.random(rows)
    table = pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "email": pa.array([f"User{i % 5000}@Example.COM" for i in range(rows)]),
            "amount_cents": pa.array(rng.integers(0, 100_000, rows)),
            "qty": pa.array(rng.integers(1, 20, rows).astype(np.int32)),
            "price": pa.array(rng.random(rows) * 100),
            "status": pa.array(rng.choice(["paid", "draft", "shipped", "open"], rows)),
            "created_at": created,
            "notes": pa.array(rng.integers(0, 1000, rows).astype(str)),
            "country": pa.array(rng.choice(["NO", "SE", "DE", "FR", "US"], rows)),
            "discount": pa.array(np.where(discount < 0.1, np.nan, discount)).fill_null(None),
        }
    )
    return ChangeBatch.build(
        "public.orders",
        table,
        ops=pa.array(["r"] * rows),
        positions=pa.array([f"{i:016X}" for i in range(rows)]),
        key=["id"],
    )


def baseline(batch: ChangeBatch) -> pa.Table:
    """The same work, written by hand in Polars."""
    c = pl.col
    frame = batch.to_polars().lazy()
    out = (
        frame.filter((c("status") != "draft") & (c("amount_cents") >= 100))
        .select(
            c("id").alias("_id"),
            c("email").str.to_lowercase().alias("email"),
            (c("amount_cents") / 100.0).alias("total"),
            (c("qty") * c("price")).alias("line_value"),
            c("status").str.to_uppercase().alias("status"),
            c("created_at").dt.truncate("1d").alias("day"),
            c("created_at").dt.year().alias("year"),
            c("notes").str.strip_chars().cast(pl.Int32, strict=False).alias("note_number"),
            pl.when(c("amount_cents") > 50000).then(pl.lit("big")).otherwise(pl.lit("small")),
            pl.concat_str([c("country"), pl.lit("-"), c("id").cast(pl.String)]).alias("code"),
            (pl.coalesce(c("discount"), 0) * c("price")).alias("discounted"),
            c("_op"),
            c("_pos"),
            c("_ts"),
            c("_txid"),
        )
        .collect()
    )
    return out.to_arrow()


def _timed(fn: Any, arg: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn(arg)
    return time.perf_counter() - started, result


def run(quick: bool = False) -> dict[str, Any]:
    rows = 200_000 if quick else 1_000_000
    runs = 3 if quick else 7
    batch = make_batch(rows)
    mapping = MappingConfig(source="public.orders", key=["id"], fields=FIELDS, filter=FILTER)
    compiled = compile_mapping("bench", mapping, batch.rows.schema, ("id",))
    mapped = compiled.apply(batch)  # warm-up (and builds the plan for this batch shape)
    expected = baseline(batch)
    if mapped.batch.num_rows != expected.num_rows or mapped.dead_letters:
        raise AssertionError("mapping and baseline disagree on the rows kept")
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed(compiled.apply, batch)[0])
        theirs.append(_timed(baseline, batch)[0])
    mapping_s, polars_s = statistics.median(ours), statistics.median(theirs)
    return {
        "benchmark": "mapping_throughput",
        "rows": rows,
        "rows_out": expected.num_rows,
        "computed_fields": len(FIELDS) - 1,
        "runs": runs,
        "mapping_seconds_median": round(mapping_s, 4),
        "polars_seconds_median": round(polars_s, 4),
        "mapping_rows_per_s": round(rows / mapping_s),
        "polars_rows_per_s": round(rows / polars_s),
        "ratio": round(mapping_s / polars_s, 3),
        "goal_ratio": 1.2,
        "within_goal": mapping_s / polars_s <= 1.2,
    }


def main() -> None:
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))


if __name__ == "__main__":
    main()
