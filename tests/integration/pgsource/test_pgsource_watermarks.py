"""Watermark windows: a chunk row's position covers exactly the window changes its read saw."""

from __future__ import annotations

import asyncio

from syncengine.changes import lsn_to_pos, pos_to_lsn
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import (
    chunk_query,
    csv_to_text_columns,
    read_copy,
    table_shape,
)
from syncengine.sources.postgres.watermarks import (
    ReadSnapshot,
    VisibilityHorizon,
    WatermarkReader,
    row_positions,
)
from syncengine.state.base import Chunk
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source


def test_window_changes_the_read_saw_raise_their_rows_position_only(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE w (id int PRIMARY KEY, v int)",
        "INSERT INTO w SELECT g, g FROM generate_series(1, 20) g",
        "CREATE TABLE other (id int PRIMARY KEY)",
    )

    async def scenario():
        source = make_source(pg_dsn, ["w", "other"], pipeline="wm")
        await source.open()
        await drain(source, None)  # slot
        start = await source.current_position()
        execute(pg_dsn, "UPDATE w SET v = 0 WHERE id = 1")  # before the window
        reader = WatermarkReader(source, pos_to_lsn(start))
        await reader.open()
        conn = await source.connect()
        shape = await table_shape(conn, "public.w", ("id",))
        await admin.emit_message(conn, admin.WATERMARK_PREFIX, "low:m1")
        horizon, exact = await VisibilityHorizon(lsn_to_pos(0)).settle(conn)
        execute(pg_dsn, "UPDATE w SET v = 30 WHERE id = 3")  # in the window, seen by the read
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap = await (await conn.execute("SELECT pg_current_snapshot()::text")).fetchone()
        query = chunk_query(shape, Chunk("public.w", 0, None, None), None)
        text = csv_to_text_columns(await read_copy(conn, query), shape.columns)
        await conn.execute("COMMIT")
        execute(  # in the window, after the read
            pg_dsn,
            "UPDATE w SET v = -1 WHERE id IN (3, 4)",
            "DELETE FROM w WHERE id = 7",
            "INSERT INTO other VALUES (5)",  # same key value, other table
        )
        await admin.emit_message(conn, admin.WATERMARK_PREFIX, "high:m1")
        windows = await asyncio.wait_for(reader.changed_keys("m1"), 10)
        read = ReadSnapshot.parse(snap[0])
        positions = row_positions(text, shape, windows["public.w"], horizon, read)
        await reader.close()
        await conn.close()
        batches, _ = await drain(source, start)
        await source.close()
        return exact, horizon, windows, text, positions, batches

    exact, horizon, windows, text, positions, batches = asyncio.run(scenario())
    assert exact
    assert set(windows["public.other"]) == {("5",)}
    assert set(windows["public.w"]) == {("3",), ("4",), ("7",)}
    assert [len(t) for t in windows["public.w"].values()] == [2, 1, 1]  # 3 changed twice
    by_id = dict(zip(text.column("id").to_pylist(), positions.to_pylist(), strict=True))
    assert {i for i, p in by_id.items() if p != horizon} == {"3"}
    # what the target's fence does with the replay: drop exactly what the rows already contain
    stream = [(r["id"], r["v"], r["_pos"]) for b in batches if b.table == "public.w" for r in
              b.data.to_pylist() if r["_op"] != "d"]  # fmt: skip
    fenced = {(i, v) for i, v, pos in stream if pos <= by_id[str(i)]}
    assert fenced == {(1, 0), (3, 30)}
    rows = dict(zip(text.column("id").to_pylist(), text.column("v").to_pylist(), strict=True))
    assert rows["3"] == "30" and rows["7"] == "7"  # the read: before the later changes
