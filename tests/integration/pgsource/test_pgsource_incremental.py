"""Incremental mode: (cursor, key) paging never skips rows that share a cursor value."""

from __future__ import annotations

import asyncio

from tests.integration.pgsource.pgsource_helpers import execute, make_source


async def _collect(source, start):
    until = await source.current_position()
    out, last = [], start
    async for batch in source.stream(start, until):
        out.extend(batch.data.to_pylist())
        last = batch.meta["resume"]
    return out, last


def test_incremental_pages_through_equal_cursors_and_sees_updates(pg_dsn):
    async def scenario():
        execute(
            pg_dsn,
            "CREATE TABLE ev (id int PRIMARY KEY, v text, "
            "updated_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00')",
            # 10 rows share one cursor value; pages of 3 must cut through them
            "INSERT INTO ev (id, v) SELECT g, 'a' FROM generate_series(1, 10) g",
        )
        source = make_source(pg_dsn, ["ev"], mode="incremental", cursor="updated_at", max_rows=3)
        await source.open()
        first, pos = await _collect(source, None)
        again, same = await _collect(source, pos)
        execute(
            pg_dsn,
            "UPDATE ev SET v = 'b', updated_at = '2024-01-02+00' WHERE id IN (2, 9)",
            "INSERT INTO ev VALUES (11, 'c', '2024-01-02+00')",
            "DELETE FROM ev WHERE id = 5",
        )
        later, _ = await _collect(source, pos)
        snap = [b async for b in source.snapshot()]
        snap_pos = await source.snapshot_position()
        await source.close()
        return first, again, same, pos, later, snap, snap_pos

    first, again, same, pos, later, snap, snap_pos = asyncio.run(scenario())
    assert [r["id"] for r in first] == list(range(1, 11))
    assert {r["_op"] for r in first} == {"u"}
    assert again == [] and same == pos
    assert [(r["id"], r["v"]) for r in later] == [(2, "b"), (9, "b"), (11, "c")]  # no delete
    assert sorted(r["id"] for b in snap for r in b.data.to_pylist()) == [
        1,
        2,
        3,
        4,
        6,
        7,
        8,
        9,
        10,
        11,
    ]
    assert '"public.ev"' in snap_pos and "11" in snap_pos
