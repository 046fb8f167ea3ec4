"""A process that applies a deterministic stream of batches to a Postgres target, resuming
from the target's checkpoint; the crash tests SIGKILL it at chosen points.

    python -m tests.integration.targets.targets_pg_worker DSN TABLE [--count N]
        [--kill-batch N --kill-point P]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.faults import ENV
from syncengine.targets.postgres import PostgresTarget

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("note", pa.string())])
STREAM = "stream"


def spec(table: str) -> TableSpec:
    return TableSpec(table, ("id",), SCHEMA)


def batches(table: str, count: int = 12, size: int = 40, seed: int = 7) -> list[ChangeBatch]:
    """Compacted batches (unique keys) of inserts, partial updates and deletes."""
    rng = random.Random(seed)
    out = []
    pos = 0
    for b in range(count):
        keys = rng.sample(range(1, 120), size)
        rows, ops, unsent, positions = [], [], [], []
        for k in keys:
            pos += 1
            op = rng.choice("cuud")
            rows.append({"id": k, "name": f"b{b}-{k}", "note": f"note {b} {k}" * 3})
            ops.append(op)
            unsent.append(op == "u" and rng.random() < 0.5)
            positions.append(f"{pos:08d}")
        out.append(
            ChangeBatch.build(
                table,
                pa.Table.from_pylist(rows, schema=SCHEMA),
                ops=ops,
                positions=positions,
                ts=[datetime(2026, 1, 1, tzinfo=UTC)] * len(rows),
                key=["id"],
                unsent={"note": unsent},
            )
        )
    return out


def expected(all_batches: list[ChangeBatch], upto: str | None) -> dict[int, dict[str, Any]]:
    """Per-row oracle of the table after every change up to position ``upto``."""
    state: dict[int, dict[str, Any]] = {}
    for batch in all_batches:
        for row in batch.data.to_pylist():
            if upto is None or row["_pos"] > upto:
                return state
            k = row["id"]
            if row["_op"] == "d":
                state.pop(k, None)
            elif row["_op"] == "c":
                state[k] = {"id": k, "name": row["name"], "note": row["note"]}
            else:
                current = state.setdefault(k, {"id": k, "name": None, "note": None})
                current["name"] = row["name"]
                if not row["_unsent.note"]:
                    current["note"] = row["note"]
    return state


def shadow_for(batch: ChangeBatch) -> ShadowUpdate:
    rows = batch.data.to_pylist()
    live = [r for r in rows if r["_op"] != "d"]
    upserts = pa.table(
        {
            "row_key": [f"[{r['id']}]" for r in live],
            "row_hash": [r["_pos"] for r in live],
            "base": pa.nulls(len(live), pa.string()),
        }
    )
    return ShadowUpdate(upserts, [f"[{r['id']}]" for r in rows if r["_op"] == "d"])


async def main(
    dsn: str, table: str, kill_batch: int | None, kill_point: str | None, count: int
) -> None:
    target = PostgresTarget(table, PostgresTargetConfig(type="postgres", dsn=dsn), None)
    await target.open()
    the_spec = await target.ensure_table(spec(table))
    done = await target.get_checkpoint(STREAM)
    for number, batch in enumerate(batches(table, count)):
        if done is not None and batch.last_position <= done:
            continue
        if number == kill_batch and kill_point:
            os.environ[ENV] = f"{kill_point}:kill"
        await target.apply(
            [TableWrite(the_spec, batch, shadow_for(batch))],
            Checkpoint(STREAM, batch.last_position),
        )
    await target.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("table")
    parser.add_argument("--kill-batch", type=int)
    parser.add_argument("--kill-point")
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.table, args.kill_batch, args.kill_point, args.count))
