"""Switching a Postgres pipeline's strategy away from ``remote`` (which keeps no shadow rows for
in-order changes, and leaves an earlier strategy's rows outdated) rebuilds the shadow from the
target before the table's first batch: no false conflict for the keys ``remote`` wrote, and a
hand edit made after the switch is still a conflict (not silently overwritten)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from syncengine.config.models import ConflictsConfig
from syncengine.conflicts import ConflictResolver
from tests.integration.conflicts.conflicts_env import Env, row


def use(env: Env, strategy: str) -> None:
    """The pipeline restarted with another strategy (same target, state and positions)."""
    env.conflicts = ConflictsConfig(strategy=strategy)
    env.resolver = ConflictResolver(
        "p", env.target, env.state, env.conflicts, fence=True, stream="s"
    )


def shadow(dsn: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT row_key, row_hash, base IS NOT NULL, position FROM _syncengine.shadow"
        ).fetchall()
        kept = conn.execute(
            "SELECT value FROM _syncengine.meta WHERE name = 'shadow_kept/p/items'"
        ).fetchone()
    return {"kept": kept[0] if kept else None, **{k: (h, b, p) for k, h, b, p in found}}


def test_remote_to_merge_rebuilds_the_shadow_once(pg_target_dsn, tmp_path):
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("DROP SCHEMA IF EXISTS _syncengine CASCADE")

    async def scenario() -> None:
        env = await Env("postgres", {"dsn": pg_target_dsn}, tmp_path / "s.db").open()
        try:
            use(env, "merge")
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"])  # 1, 2
            assert shadow(pg_target_dsn)["kept"] == "full"
            use(env, "remote")
            await env.run([row(1, "r1", 2, 2), row(3, "c", 1, 2), row(4, "d", 1, 2)],
                          ["u", "c", "c"])  # 3-5: no shadow rows, 1's row outdated  # fmt: skip
            before = shadow(pg_target_dsn)
            assert before["kept"] == "fence" and set(before) == {"kept", '{"id":1}', '{"id":2}'}
            use(env, "merge")
            # the first batch under merge: 1 (outdated row) and 4 (none) are no conflicts
            resolved = await env.run([row(1, "r1", 3, 3), row(4, "d", 2, 3)], ["u", "u"])  # 6, 7
            assert resolved.conflicts == 0
            after = shadow(pg_target_dsn)
            assert after["kept"] == "full" and set(after) == {
                "kept", '{"id":1}', '{"id":2}', '{"id":3}', '{"id":4}'
            }  # fmt: skip
            assert after['{"id":3}'][1:] == (True, f"{5:016X}")  # base, at the checkpoint
            env.edit(3, name="hand")  # after the switch: merge must not lose it
            resolved = await env.run([row(3, "c", 9, 4)], ["u"])
            assert resolved.conflicts == 1
            assert env.rows() == {1: ("r1", 3), 2: ("b", 1), 3: ("hand", 9), 4: ("d", 2)}
            use(env, "merge")  # a restart under the same strategy: nothing rebuilt
            env.edit(2, name="hand2")
            resolved = await env.run([row(2, "b", 5, 5)], ["u"])
            assert resolved.conflicts == 1 and env.rows()[2] == ("hand2", 5)
        finally:
            await env.close()

    asyncio.run(scenario())
