"""A table copied while the stream runs keeps a per-key fence row only where a replay could still
reach its key: a copied row at or below the checkpoint the stream had committed when the row was
handed over (``SETTLED``) keeps none, one above it keeps its row; either way the fence rows the
stream left still drop a copied row older than the change they record."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from syncengine.changes import DENSE_FENCE, OP_READ, SETTLED, ChangeBatch
from syncengine.conflicts import ConflictResolver
from syncengine.runtime.tableops import as_updates
from syncengine.targets.base import Checkpoint
from tests.integration.conflicts.conflicts_env import Env, batch, row


def at(rows: list[dict[str, Any]], ops: list[str], position: int, **meta: Any) -> ChangeBatch:
    built = batch(rows, ops, position)
    return ChangeBatch(built.table, built.data, built.key, {**built.meta, **meta})


def shadow_keys(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT row_key, position FROM _syncengine.shadow "
            "WHERE pipeline = 'p' AND target_table = 'items'"
        ).fetchall()
    return {k: p for k, p in rows}


def copy(rows: list[dict[str, Any]], position: int, settled: int | None) -> ChangeBatch:
    """Copied rows at consecutive positions from ``position``, as the runtime hands them over
    (``SETTLED``: the stream's committed checkpoint then, None: not known)."""
    built = as_updates(at(rows, [OP_READ] * len(rows), position))
    meta = dict(built.meta)
    if settled is not None:
        meta[SETTLED] = f"{settled:016X}"
    return ChangeBatch(built.table, built.data, built.key, meta)


def test_copied_rows_below_the_committed_checkpoint_keep_no_fence_row(pg_target_dsn, tmp_path):
    async def scenario() -> tuple[dict[int, tuple[str, int]], dict[str, str]]:
        env = await Env("postgres", {"dsn": pg_target_dsn}, tmp_path / "s.db").open()
        env.resolver = ConflictResolver(
            "p", env.target, env.state, env.conflicts, fence=True, stream="s"
        )
        try:
            # the stream changed key 1 at position 0x20 while the table was being copied
            change = at([row(1, "stream", 20, 20)], ["u"], 0x20, **{DENSE_FENCE: True})
            resolved = await env.resolver.resolve(env.spec, change)
            await env.target.apply([resolved.write], Checkpoint("s", f"{0x30:016X}"))
            # copied rows read at 0x10..0x13 (key 1 older than the stream's change) and at
            # 0x40..0x41 (above the checkpoint the stream had committed, 0x30)
            older = copy([row(i, "copied", 1, 1) for i in (1, 2, 3, 4)], 0x10, settled=0x30)
            newer = copy([row(i, "copied", 2, 2) for i in (5, 6)], 0x40, settled=0x30)
            for part in (older, newer):
                resolved = await env.resolver.resolve(env.spec, part)
                await env.target.apply([resolved.write], None)
            return env.rows(), shadow_keys(pg_target_dsn)
        finally:
            await env.close()

    rows, shadow = asyncio.run(scenario())
    # the stream's newer change of key 1 stands; the other copied rows are all there
    assert rows == {1: ("stream", 20), 2: ("copied", 1), 3: ("copied", 1), 4: ("copied", 1),
                    5: ("copied", 2), 6: ("copied", 2)}  # fmt: skip
    # fence rows: the stream's change, and the two copied rows above the checkpoint only
    assert shadow == {'{"id":1}': f"{0x20:016X}", '{"id":5}': f"{0x40:016X}",
                      '{"id":6}': f"{0x41:016X}"}  # fmt: skip


def test_copied_rows_keep_their_fence_rows_when_no_checkpoint_is_known(pg_target_dsn, tmp_path):
    """Before the stream committed a group in this process (or for a paused table) nothing
    says which changes are applied: every copied row keeps its fence row, and a later replay
    of an older change of its key is dropped."""

    async def scenario() -> tuple[dict[int, tuple[str, int]], dict[str, str]]:
        env = await Env("postgres", {"dsn": pg_target_dsn}, tmp_path / "s.db").open()
        env.resolver = ConflictResolver(
            "p", env.target, env.state, env.conflicts, fence=True, stream="s"
        )
        try:
            copied = copy([row(i, "copied", 1, 1) for i in (1, 2)], 0x10, settled=None)
            resolved = await env.resolver.resolve(env.spec, copied)
            await env.target.apply([resolved.write], None)
            # the stream replays an older change of key 1 (from a checkpoint below the copy)
            stale = at([row(1, "stale", 9, 9)], ["u"], 0x08)
            resolved = await env.resolver.resolve(env.spec, stale)
            await env.target.apply([resolved.write], Checkpoint("s", f"{0x08:016X}"))
            return env.rows(), shadow_keys(pg_target_dsn)
        finally:
            await env.close()

    rows, shadow = asyncio.run(scenario())
    assert rows == {1: ("copied", 1), 2: ("copied", 1)}
    assert set(shadow) == {'{"id":1}', '{"id":2}'}
