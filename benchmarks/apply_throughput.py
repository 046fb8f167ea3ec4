"""Apply throughput of the Postgres target vs a plain ``COPY`` of the same rows.

The same N rows (1M; 100k with ``--quick``) are written four ways in one run, on one server:

* ``copy``: the baseline — Arrow → CSV and ``COPY`` into an empty table with a primary key, one
  transaction per chunk (also measured on one chunk: binary ``COPY`` fed row by row through
  psycopg, to justify the target's choice of text);
* ``insert``: ``PostgresTarget.apply`` of N compacted ``c`` changes into an empty table;
* ``update``: N ``u`` changes (every row exists, values changed) into that table, against a
  second baseline ``copy2`` (the same rows copied into another empty table);
* ``replay``: the same ``u`` batch again right after (the target holds it: nothing is rewritten).

Applies go in batches of ``BATCH_ROWS`` with a checkpoint each, as the runtime commits, and
alternate chunk by chunk with the baseline so machine load hits both alike. Ratios are apply
seconds / copy seconds (goal: ≤ 2); encoding time counts on both sides.
Run: ``python -m benchmarks.apply_throughput [--quick]`` (prints JSON). A throwaway server is
started unless ``SYNCENGINE_TEST_PG_DSN`` names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.targets.base import Checkpoint, TableSpec, TableWrite
from syncengine.targets.postgres import PostgresTarget
from syncengine.targets.postgres.types import to_csv

BATCH_ROWS = 100_000
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("qty", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("note", pa.string()),
    ]
)


def rows(n: int, version: int) -> pa.Table:
    """N rows built column-wise (no Python loop per row)."""
    ids = pa.array(range(1, n + 1), pa.int64())
    text = pc.cast(ids, pa.string())
    return pa.table(
        {
            "id": ids,
            "name": pc.binary_join_element_wise(f"item-v{version}-", text, ""),
            "qty": pc.add(ids, version),
            "price": pc.divide(pc.cast(ids, pa.float64()), 100.0),
            "updated_at": pa.array([1_700_000_000_000_000 + version] * n, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "note": pc.binary_join_element_wise("a longer note for row ", text, ""),
        },
        schema=SCHEMA,
    )


def batches(table: pa.Table, op: str, first_pos: int) -> Iterator[ChangeBatch]:
    for start in range(0, table.num_rows, BATCH_ROWS):
        part = table.slice(start, BATCH_ROWS)
        n = part.num_rows
        positions = pc.utf8_lpad(
            pc.cast(pa.array(range(first_pos + start, first_pos + start + n)), pa.string()), 16, "0"
        )
        yield ChangeBatch.build(
            "items", part, ops=pa.array([op] * n), positions=positions, key=["id"]
        )


_DDL = (
    "CREATE TABLE {} (id bigint PRIMARY KEY, name text, qty bigint, price double precision, "
    "updated_at timestamptz, note text)"
)


async def copy_chunk(
    conn: psycopg.AsyncConnection, name: str, part: pa.Table, binary: bool
) -> float:
    """Plain COPY of one chunk in its own transaction: Arrow's CSV writer (text), or psycopg's
    binary COPY fed row by row (``write_row``), the alternative the target could have used."""
    fmt = sql.SQL("binary" if binary else "csv")
    started = time.perf_counter()
    async with conn.transaction(), conn.cursor() as cur:
        copy = sql.SQL("COPY {} FROM STDIN (FORMAT {})").format(sql.Identifier(name), fmt)
        async with cur.copy(copy) as pipe:
            if binary:
                pipe.set_types(["bigint", "text", "bigint", "float8", "timestamptz", "text"])
                columns = [part.column(i).to_pylist() for i in range(part.num_columns)]
                for row in zip(*columns, strict=True):
                    await pipe.write_row(row)
            else:
                await pipe.write(to_csv(part, {}))
    return time.perf_counter() - started


async def timed_apply(target: PostgresTarget, spec: TableSpec, batch: ChangeBatch) -> float:
    started = time.perf_counter()
    await target.apply([TableWrite(spec, batch)], Checkpoint("bench", batch.last_position))
    return time.perf_counter() - started


async def measure(dsn: str, n: int) -> dict[str, float]:
    """Baseline and apply interleave chunk by chunk, so a busy machine slows both alike."""
    first, second = rows(n, 1), rows(n, 2)
    seconds = dict.fromkeys(["copy_s", "insert_s", "copy2_s", "update_s", "replay_s"], 0.0)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for name in ("copy_baseline", "copy_baseline2", "copy_binary"):
        await conn.execute(sql.SQL(_DDL).format(sql.Identifier(name)))
    target = PostgresTarget("bench", PostgresTargetConfig(type="postgres", dsn=dsn), None)
    await target.open()
    spec = await target.ensure_table(TableSpec("items", ("id",), SCHEMA))
    # one chunk of row-by-row binary COPY, next to one chunk of text COPY
    part = first.slice(0, BATCH_ROWS)
    seconds["binary_chunk_s"] = await copy_chunk(conn, "copy_binary", part, True)
    for start, batch in zip(range(0, n, BATCH_ROWS), batches(first, "c", 0), strict=True):
        seconds["copy_s"] += await copy_chunk(
            conn, "copy_baseline", first.slice(start, BATCH_ROWS), False
        )
        seconds["insert_s"] += await timed_apply(target, spec, batch)
    for start, batch in zip(range(0, n, BATCH_ROWS), batches(second, "u", n), strict=True):
        seconds["copy2_s"] += await copy_chunk(
            conn, "copy_baseline2", second.slice(start, BATCH_ROWS), False
        )
        seconds["update_s"] += await timed_apply(target, spec, batch)
        seconds["replay_s"] += await timed_apply(target, spec, batch)
    seconds["text_chunk_s"] = seconds["copy_s"] * BATCH_ROWS / n
    await target.close()
    applied, copied = await digest(conn, "items"), await digest(conn, "copy_baseline2")
    await conn.close()
    if applied != copied or applied[0] != n:
        raise AssertionError(f"target rows {applied} != the rows copied {copied} (count, checksum)")
    seconds["checked_rows"] = applied[0]
    return seconds


async def digest(conn: psycopg.AsyncConnection, table: str) -> tuple[int, int]:
    """(rows, order-independent checksum of every column) of a table."""
    cur = await conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtext(row(id, name, qty, price, updated_at, note)"
            "::text)::bigint), 0) FROM {}"
        ).format(sql.Identifier(table))
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@contextlib.contextmanager
def database() -> Iterator[str]:
    external = os.environ.get("SYNCENGINE_TEST_PG_DSN")
    if external:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(external, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(**{**conninfo_to_dict(external), "dbname": name})
        finally:
            with psycopg.connect(external, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    from tests.servers import running_postgres

    with running_postgres() as server:
        yield server.dsn()


def run(quick: bool = False) -> dict[str, object]:
    n = 200_000 if quick else 1_000_000
    with database() as dsn:
        s = asyncio.run(measure(dsn, n))
    return {
        "rows": n,
        "checked_rows": int(s.pop("checked_rows")),
        "batch_rows": BATCH_ROWS,
        **{k: round(v, 3) for k, v in s.items()},
        "copy_rows_per_s": round(n / s["copy_s"]),
        "insert_rows_per_s": round(n / s["insert_s"]),
        "update_rows_per_s": round(n / s["update_s"]),
        "insert_vs_copy": round(s["insert_s"] / s["copy_s"], 2),
        "update_vs_copy": round(s["update_s"] / s["copy2_s"], 2),
        "replay_vs_copy": round(s["replay_s"] / s["copy2_s"], 2),
        "binary_rowwise_vs_text_copy": round(s["binary_chunk_s"] / s["text_chunk_s"], 2),
        "goal": "insert_vs_copy and update_vs_copy <= 2",
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
