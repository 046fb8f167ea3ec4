"""``remote`` without read-back on Postgres: the position fence runs on the server.

What the server executed is read from ``pg_stat_statements`` on a cluster of this module's
own (the extension must be preloaded), not from the engine's variables: under ``remote`` no
statement selects target or shadow rows, yet a replayed older change is still dropped."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from syncengine.changes import AT_RESUME, ChangeBatch
from syncengine.conflicts import ConflictResolver
from syncengine.targets.base import Checkpoint
from tests.integration.conflicts.conflicts_env import Env, batch, row
from tests.servers import PostgresServer

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SYNCENGINE_TEST_PG_DSN")), reason="needs its own cluster"
)


@pytest.fixture(scope="module")
def counted_dsn() -> Iterator[str]:
    server = PostgresServer(
        settings={"shared_preload_libraries": "'pg_stat_statements'",
                  "pg_stat_statements.track": "all"}
    ).start()  # fmt: skip
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fence_tgt")
        dsn = server.dsn("fence_tgt")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        yield dsn
    finally:
        server.destroy()


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def executed(dsn: str) -> list[tuple[str, int]]:
    """(query, calls) the server ran in this database since the last reset."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = current_database() "
            "AND s.query NOT ILIKE '%pg_stat_statements%'"
        ).fetchall()


def reads_back(queries: list[tuple[str, int]]) -> list[str]:
    """Statements that select rows of the data table or the shadow (but the once-per-store
    look-up of the highest shadow position, floor.py, which runs at most once)."""
    once = [c for q, c in queries if "max(position" in q]
    assert sum(once) <= 1
    return [
        q for q, _ in queries
        if q.lstrip().upper().startswith("SELECT") and ("items" in q or "shadow" in q)
        and "max(position" not in q
    ]  # fmt: skip


async def fenced_env(dsn: str, path: Any, stream: str | None = "s", **conflicts: Any) -> Env:
    env = await Env("postgres", {"dsn": dsn}, path, strategy="remote", **conflicts).open()
    env.resolver = ConflictResolver(
        "p", env.target, env.state, env.conflicts, fence=True, stream=stream
    )
    return env


def clean(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("DROP SCHEMA IF EXISTS _syncengine CASCADE")


def probes_and_drops(queries: list[tuple[str, int]]) -> tuple[int, int]:
    """How often the server probed the shadow for staged keys, and dropped stale changes."""
    probes = sum(c for q, c in queries if q.startswith("INSERT") and "_had" in q
                 and "shadow" in q and "LATERAL" in q)  # fmt: skip
    stale = sum(c for q, c in queries if q.startswith("DELETE") and "stage" in q
                and "_had" in q and "COLLATE" in q)  # fmt: skip
    return probes, stale


def test_replay_below_the_checkpoint_is_dropped_without_shadow_rows(counted_dsn, tmp_path):
    """In-order groups keep no shadow row at all: the checkpoint committed with them is their
    fence. A replay below it (a source resending from the start, committing no checkpoint of
    its own) is dropped before staging: no probe, no read-back, nothing moves back."""
    clean(counted_dsn)

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db")
        try:
            reset(counted_dsn)
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"])  # 1, 2
            await env.run([row(1, "a", 2, 2)], ["u"])  # 3
            await env.run([{"id": 2}], ["d"])  # 4: no tombstone either
            assert shadow_rows(counted_dsn) == {}
            assert probes_and_drops(executed(counted_dsn)) == (0, 0)
            reset(counted_dsn)
            env.position = 0  # a restart resends everything from position 1
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"], commit=False)
            await env.run([row(1, "old", 2, 2)], ["u"], commit=False)
            await env.run([row(2, "ghost", 9, 2)], ["u"], commit=False)  # the delete's own 4
            queries = executed(counted_dsn)
            assert env.rows() == {1: ("a", 2)}  # nothing moved back in time
            assert reads_back(queries) == []
            assert probes_and_drops(queries) == (0, 0)
            assert not [q for q, _ in queries if q.startswith("COPY")]  # nothing even staged
            env.position = 4
            await env.run([row(1, "a", 3, 3), row(2, "back", 5, 3)], ["u", "c"])  # newer
            assert env.rows() == {1: ("a", 3), 2: ("back", 5)}
            assert shadow_rows(counted_dsn) == {}
        finally:
            await env.close()

    asyncio.run(scenario())


def test_parts_of_a_huge_transaction_keep_fence_rows_until_its_commit(counted_dsn, tmp_path):
    """Parts committed before their transaction's end (no checkpoint: the runtime's
    ``HOLD_GROUPS``) sit above the stored checkpoint, where a replay reaches them: they keep
    fence rows, the probe runs while any is above the checkpoint, and a replay of the parts
    (the crash-and-restart case) is dropped key by key. Once the checkpoint passes them the
    probe stops again."""
    clean(counted_dsn)

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db")
        try:
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"])  # 1, 2
            reset(counted_dsn)
            await env.run([row(1, "p1", 2, 2), row(3, "p1", 1, 2)], ["u", "c"], commit=False)
            await env.run([row(1, "p2", 3, 3), {"id": 2}], ["u", "d"], commit=False)  # 5, 6
            assert shadow_rows(counted_dsn) == {
                '{"id":1}': ("fence", None, f"{5:016X}"),
                '{"id":2}': ("", None, f"{6:016X}"),  # a tombstone
                '{"id":3}': ("fence", None, f"{4:016X}"),
            }
            assert probes_and_drops(executed(counted_dsn))[0] == 1  # the second part's
            reset(counted_dsn)
            env.position = 2  # crash before the commit: the transaction comes again
            await env.run([row(1, "p1", 2, 2), row(3, "p1", 1, 2)], ["u", "c"], commit=False)
            await env.run([row(1, "p2", 3, 3), {"id": 2}], ["u", "d"], commit=False)
            await env.run([row(2, "back", 7, 4)], ["c"])  # 7 and the commit: checkpoint 7
            probes, stale = probes_and_drops(executed(counted_dsn))
            assert probes == 3 and stale >= 2  # replayed changes dropped key by key
            assert env.rows() == {1: ("p2", 3), 2: ("back", 7), 3: ("p1", 1)}
            reset(counted_dsn)
            await env.run([row(1, "later", 4, 5)], ["u"])  # 8: the checkpoint passed the mark
            assert probes_and_drops(executed(counted_dsn)) == (0, 0)
            assert env.rows()[1] == ("later", 4)
        finally:
            await env.close()

    asyncio.run(scenario())


def test_audit_reads_back_what_remote_overwrites(counted_dsn, tmp_path):
    """The same check sees reads when ``audit`` asks for detection (so it can fail)."""
    clean(counted_dsn)

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db", audit=True)
        try:
            await env.run([row(1, "a", 1, 1)], ["c"])
            env.edit(1, name="hand")
            reset(counted_dsn)
            resolved = await env.run([row(1, "a", 2, 2)], ["u"])
            assert resolved.conflicts == 1
            assert len(reads_back(executed(counted_dsn))) >= 2  # target rows and shadow rows
        finally:
            await env.close()

    asyncio.run(scenario())


def shadow_rows(dsn: str) -> dict[str, tuple[str, str | None, str | None]]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT row_key, row_hash, base, position FROM _syncengine.shadow"
        ).fetchall()
    return {k: (h, b, p) for k, h, b, p in found}


def test_snapshot_chunk_is_a_plain_copy(counted_dsn, tmp_path):
    """A chunk of an exported snapshot (``at_resume``) into keys the target lacks: one COPY
    into the table, no read-back, no shadow rows; a reconciled chunk records its positions."""
    clean(counted_dsn)

    def chunk(first: int, meta: dict[str, object]) -> ChangeBatch:
        b = batch([row(i, f"n{i}", i, 1) for i in range(first, first + 100)], ["r"] * 100, 7)
        return ChangeBatch(b.table, b.data, b.key, meta)

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db")
        try:
            reset(counted_dsn)
            for b in (chunk(0, {"snapshot": True, AT_RESUME: True}),
                      chunk(100, {"snapshot": True})):  # fmt: skip
                resolved = await env.resolver.resolve(env.spec, b)
                await env.target.apply([resolved.write], None)
            queries = executed(counted_dsn)
            assert reads_back([(q, c) for q, c in queries if "EXISTS" not in q]) == []
            copies = [q for q, _ in queries if q.startswith("COPY")]
            assert any('"items"' in q for q in copies)
            assert not any("stage" in q for q in copies)  # straight in, not staged
            assert len(env.rows()) == 200
            shadow = shadow_rows(counted_dsn)
            assert len(shadow) == 100 and '{"id":150}' in shadow  # the reconciled chunk only
            assert shadow['{"id":150}'] == ("fence", None, f"{7 + 50:016X}")
            # a later stream change of an unfenced snapshot row applies; a stale one of a
            # fenced row does not
            env.position = 1000
            await env.run([row(5, "new", 5, 2)], ["u"])
            env.position = 10
            await env.run([row(150, "stale", 0, 0)], ["u"])
            assert env.rows()[5] == ("new", 5) and env.rows()[150] == ("n150", 150)
            await env.target.apply([], Checkpoint("s", "x"))
        finally:
            await env.close()

    asyncio.run(scenario())


def test_fresh_keys_insert_known_keys_upsert_stale_keys_drop(counted_dsn, tmp_path):
    """Where every change keeps a fence row (no checkpoint to fence with: a dead-letter
    replay, a snapshot), one batch holding keys the shadow lacks, keys it holds at an older
    position, a tombstoned key coming back and a stale replay: the fresh keys get a plain
    INSERT, the known ones an upsert, and every key ends at the position of the change the
    target holds."""
    clean(counted_dsn)

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db", stream=None)
        try:
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1), row(3, "c", 1, 1)],
                          ["c", "c", "c"])  # 1-3  # fmt: skip
            await env.run([{"id": 3}], ["d"])  # 4: a tombstone for 3
            env.position = 10
            reset(counted_dsn)
            # 11: 1 updated, 12: 3 inserted again, 13: 4 new, 14: 5 new
            await env.run([row(1, "a2", 2, 2), row(3, "c2", 2, 2), row(4, "d", 1, 1),
                           row(5, "e", 1, 1)], ["u", "c", "c", "c"])  # fmt: skip
            queries = executed(counted_dsn)
            plain = [q for q, _ in queries if q.startswith("INSERT") and "shadow" in q
                     and "NOT EXISTS" in q and "ON CONFLICT" not in q]  # fmt: skip
            upserts = [q for q, _ in queries if q.startswith("INSERT") and "shadow" in q
                       and "JOIN" in q and "ON CONFLICT" in q]  # fmt: skip
            assert plain and upserts
            env.position = 11  # a replay of 12-13 only: both stale now
            await env.run([row(3, "old", 0, 0), row(4, "old", 0, 0)], ["u", "u"])
            assert env.rows() == {1: ("a2", 2), 2: ("b", 1), 3: ("c2", 2), 4: ("d", 1),
                                  5: ("e", 1)}  # fmt: skip
            assert shadow_rows(counted_dsn) == {
                '{"id":1}': ("fence", None, f"{11:016X}"),
                '{"id":2}': ("fence", None, f"{2:016X}"),
                '{"id":3}': ("fence", None, f"{12:016X}"),
                '{"id":4}': ("fence", None, f"{13:016X}"),
                '{"id":5}': ("fence", None, f"{14:016X}"),
            }
        finally:
            await env.close()

    asyncio.run(scenario())


def test_new_keys_are_copied_straight_in_and_a_taken_key_falls_back(counted_dsn, tmp_path):
    """A mixed group's inserts (at least DIRECT_INSERTS of them) go into the table with one
    COPY, only the updates are staged; when one insert's key is in the table already (a row
    added by hand) the COPY is rolled back and the whole group takes the staged upsert: every
    row ends as the source sent it, none twice."""
    from syncengine.targets.postgres.apply import DIRECT_INSERTS

    clean(counted_dsn)
    n = DIRECT_INSERTS

    async def scenario() -> None:
        env = await fenced_env(counted_dsn, tmp_path / "state.db")
        try:
            await env.run([row(0, "a", 1, 1)], ["c"])
            reset(counted_dsn)
            await env.run([row(0, "a2", 2, 2)] + [row(i, "n", i, 2) for i in range(1, n + 1)],
                          ["u"] + ["c"] * n)  # fmt: skip
            queries = executed(counted_dsn)
            direct = [c for q, c in queries if q.startswith("COPY") and '"items"' in q]
            staged = [q for q, _ in queries if q.startswith("INSERT") and '"items"' in q]
            assert sum(direct) == 1 and len(staged) == 1  # inserts copied, the update staged
            assert len(env.rows()) == n + 1 and env.rows()[0] == ("a2", 2)
            env.insert(row(2 * n, "hand", 0, 0))  # the key a later insert brings
            reset(counted_dsn)
            first = n + 1
            await env.run([row(0, "a3", 3, 3)] + [row(i, "m", 7, 3) for i in range(first,
                                                                            2 * n + 1)],
                          ["u"] + ["c"] * n)  # fmt: skip
            queries = executed(counted_dsn)
            assert any("ROLLBACK TO" in q for q, _ in queries)  # the failed COPY undone
            assert any(q.startswith("COPY") and "stage" in q for q, _ in queries)  # fell back
            rows = env.rows()
            assert len(rows) == 2 * n + 1 and rows[2 * n] == ("m", 7) and rows[0] == ("a3", 3)
            with psycopg.connect(counted_dsn) as conn:
                assert conn.execute("SELECT count(DISTINCT id) FROM items").fetchone() == (
                    2 * n + 1,
                )
        finally:
            await env.close()

    asyncio.run(scenario())
