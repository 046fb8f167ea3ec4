"""Conflict handling cost: apply updates with 30% conflicts under ``merge`` vs none.

Two identical tables in a throwaway Postgres (or ``SYNCENGINE_TEST_PG_DSN``) are seeded
through the pipeline's conflict step (so shadow rows exist). 30% of the rows of the second table
are then edited by hand. The same update batches (every row, one column changed, 10,000 rows per
batch like the default ``batch.max_rows``) go through ``ConflictResolver.resolve`` and
``PostgresTarget.apply`` for both tables: the first table is the same-run baseline (detection runs
but finds nothing), the second pays for the merge, the writes of merged rows and the audit rows.

Each side runs several rounds, alternating, and the best round counts (the first round of a
process pays for warm-up). Run: ``python -m benchmarks.conflict_apply [--quick]`` (prints JSON).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.changes import ChangeBatch
from syncengine.config.models import ConflictsConfig, PostgresTargetConfig
from syncengine.conflicts import ConflictResolver
from syncengine.state import SQLiteStateStore
from syncengine.targets.base import Checkpoint, TableSpec

BATCH_ROWS = 10_000
CONFLICT_SHARE = 0.3
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("qty", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _rows(start: int, stop: int, qty_offset: int) -> pa.Table:
    ids = list(range(start, stop))
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"item-{i}" for i in ids]),
            "qty": pa.array([i + qty_offset for i in ids], pa.int64()),
            "price": pa.array([i / 100 for i in ids], pa.float64()),
            "updated_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
        },
        schema=SCHEMA,
    )


def _batch(table: str, rows: pa.Table, op: str, position: int) -> ChangeBatch:
    n = rows.num_rows
    return ChangeBatch.build(
        table,
        rows,
        ops=[op] * n,
        positions=[f"{position + i:016X}" for i in range(n)],
        key=["id"],
    )


async def _pass(
    resolver: ConflictResolver, spec: TableSpec, n: int, op: str, qty_offset: int, base: int
) -> dict[str, float]:
    """Resolve and apply every row in batches; seconds spent in each step and conflicts."""
    resolve_s = apply_s = 0.0
    conflicts = 0
    for start in range(0, n, BATCH_ROWS):
        batch = _batch(spec.name, _rows(start, min(n, start + BATCH_ROWS), qty_offset), op, base)
        t0 = time.perf_counter()
        resolved = await resolver.resolve(spec, batch)
        t1 = time.perf_counter()
        await resolver.target.apply([resolved.write], Checkpoint(spec.name, f"{base + start:016X}"))
        apply_s += time.perf_counter() - t1
        resolve_s += t1 - t0
        conflicts += resolved.conflicts
    return {"resolve_s": resolve_s, "apply_s": apply_s, "conflicts": conflicts}


async def _measure(dsn: str, state_path: Path, n: int, rounds: int) -> dict[str, Any]:
    from syncengine.targets.postgres import PostgresTarget

    state = SQLiteStateStore(state_path)
    target = PostgresTarget("bench", PostgresTargetConfig(type="postgres", dsn=dsn), state)
    await target.open()
    merge = ConflictsConfig(strategy="merge")
    resolver = ConflictResolver("bench", target, state, merge)
    try:
        specs = [await target.ensure_table(TableSpec(t, ("id",), SCHEMA)) for t in ("a", "b")]
        for spec in specs:
            await _pass(resolver, spec, n, "r", 0, 1)
        edited = int(n * CONFLICT_SHARE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # every third-ish row of b, by hand: 30% of the keys conflict
            conn.execute(
                sql.SQL("UPDATE {} SET name = name || '-hand' WHERE id IN "
                        "(SELECT id FROM {} ORDER BY md5(id::text) LIMIT %s)").format(
                    sql.Identifier("b"), sql.Identifier("b")
                ),
                (edited,),
            )  # fmt: skip
        # alternate the two sides, best of ``rounds``: the edited rows stay in conflict
        # round after round (the shadow keeps the source's version, the target its edit)
        runs: dict[str, list[dict[str, float]]] = {"clean": [], "conflicted": []}
        for r in range(1, rounds + 1):
            position = 10_000_000 * r
            runs["clean"].append(await _pass(resolver, specs[0], n, "u", r, position))
            runs["conflicted"].append(await _pass(resolver, specs[1], n, "u", r, position))
        with psycopg.connect(dsn) as conn:
            kept = conn.execute("SELECT count(*) FROM b WHERE name LIKE '%%-hand'").fetchone()
            moved = conn.execute("SELECT count(*) FROM b WHERE qty = id + %s", (rounds,))
            moved_count = moved.fetchone()
        assert all(x["conflicts"] == edited for x in runs["conflicted"])
        assert all(x["conflicts"] == 0 for x in runs["clean"])
        # merged: the hand edits and the source's changes both survive
        assert kept and kept[0] == edited and moved_count and moved_count[0] == n
        clean = min(runs["clean"], key=_total)
        conflicted = min(runs["conflicted"], key=_total)
    finally:
        await target.close()
        state.close()
    total_clean, total_conflicted = _total(clean), _total(conflicted)
    return {
        "rows": n,
        "batch_rows": BATCH_ROWS,
        "conflicts": conflicted["conflicts"],
        "strategy": "merge",
        "no_conflicts": {**clean, "rows_per_s": round(n / total_clean)},
        "with_conflicts": {**conflicted, "rows_per_s": round(n / total_conflicted)},
        "ratio": round(total_conflicted / total_clean, 2),
        "rounds": rounds,
    }


def _total(run: dict[str, float]) -> float:
    return run["resolve_s"] + run["apply_s"]


def run(quick: bool = False) -> dict[str, Any]:
    """Measure; ``quick``: 20,000 rows, best of 2 rounds (else 200,000, best of 3)."""
    n, rounds = (20_000, 2) if quick else (200_000, 3)
    external = os.environ.get("SYNCENGINE_TEST_PG_DSN")
    with tempfile.TemporaryDirectory(prefix="syncengine-bench-") as tmp:
        state_path = Path(tmp) / "state.db"
        if external:
            return _with_database(external, lambda dsn: _measure(dsn, state_path, n, rounds))
        from tests.servers import PostgresServer

        server = PostgresServer().start()
        try:
            return _with_database(server.dsn(), lambda dsn: _measure(dsn, state_path, n, rounds))
        finally:
            server.destroy()


def _with_database(admin_dsn: str, body: Any) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(**{**conninfo_to_dict(admin_dsn), "dbname": name})
        return asyncio.run(body(dsn))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
