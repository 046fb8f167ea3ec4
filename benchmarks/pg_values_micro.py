"""Micro-benchmark: what handling Postgres values beyond Arrow (issue 23) costs.

``python -m benchmarks.pg_values_micro``: one million values per line, best of a few runs, in
this process (no servers). The common path (ordinary timestamps, one-dimensional arrays) must
cost what it did; the exact path for infinity / BC runs only on columns that hold them.
Numbers are recorded in docs/postgres-source.md ("Values beyond Arrow").
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.codecs import pg_temporal
from syncengine.sources.postgres.columns import pg_type, to_arrow
from syncengine.targets.postgres.types import to_csv

N = 1_000_000


def best(run: Callable[[], object], repeat: int = 5) -> float:
    """Milliseconds of the fastest of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    start = pl.datetime(2020, 1, 1)
    stamps = pl.datetime_range(start, start + pl.duration(seconds=N - 1), "1s", eager=True)
    text = pa.array(stamps.dt.to_string("%Y-%m-%d %H:%M:%S%.6f").to_list())
    arrays = pa.array([f"{{1,2,3,{i}}}" for i in range(N)])
    native = text.cast(pa.timestamp("us"))
    every_1024th = pc.equal(pc.bit_wise_and(pa.array(range(N)), 1023), 0)
    with_infinity = pc.if_else(
        every_1024th, pa.scalar(pg_temporal.TS_INFINITY), native.cast(pa.int64())
    ).cast(pa.timestamp("us"))
    table = pa.table({"id": pa.array(range(N)), "at": native})
    rows = [
        ("timestamp text → Arrow (to_arrow)", lambda: to_arrow(text, pg_type(1114, -1))),
        ("timestamp text → Arrow (Arrow cast alone)", lambda: text.cast(pa.timestamp("us"))),
        ("integer[] text → Arrow (to_arrow)", lambda: to_arrow(arrays, pg_type(1007, -1))),
        (
            "  of which the one-dimension check",
            lambda: pc.any(pc.or_(pc.starts_with(arrays, "{{"), pc.starts_with(arrays, "["))),
        ),
        ("is_ordinary on 1M timestamps", lambda: pg_temporal.is_ordinary(native)),
        ("to_csv (id, timestamp)", lambda: to_csv(table, {"id": "bigint", "at": "timestamp"})),
        ("exact path: to_text, 1 in 1024 infinite", lambda: pg_temporal.to_text(with_infinity)),
        (
            "exact path: parse that text",
            lambda: pg_temporal.parse(pg_temporal.to_text(with_infinity), pa.timestamp("us")),
        ),
    ]
    for name, run in rows:
        print(f"{name:45s} {best(run, 3):8.1f} ms")


if __name__ == "__main__":
    main()
