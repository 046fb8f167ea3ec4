"""DBLog windows: keys changed between a chunk's low and high watermark are dropped."""

from __future__ import annotations

import asyncio

from syncengine.changes import pos_to_lsn
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import (
    chunk_query,
    csv_to_text_columns,
    read_copy,
    table_shape,
)
from syncengine.sources.postgres.watermarks import WatermarkReader
from syncengine.state.base import Chunk
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source


def test_changes_inside_the_window_drop_their_rows_only(pg_dsn):
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
        execute(pg_dsn, "UPDATE w SET v = 0 WHERE id = 1")  # before the window: kept
        reader = WatermarkReader(source, pos_to_lsn(start))
        await reader.open()
        conn = await source.connect()
        shape = await table_shape(conn, "public.w", ("id",))
        await admin.emit_message(conn, admin.WATERMARK_PREFIX, "low:m1")
        text = csv_to_text_columns(
            await read_copy(conn, chunk_query(shape, Chunk("public.w", 0, None, None), None)),
            shape.columns,
        )
        execute(
            pg_dsn,
            "UPDATE w SET v = -1 WHERE id IN (3, 4)",
            "DELETE FROM w WHERE id = 7",
            "INSERT INTO other VALUES (5)",  # same key value, other table: not dropped
        )
        await admin.emit_message(conn, admin.WATERMARK_PREFIX, "high:m1")
        windows = await asyncio.wait_for(reader.changed_keys("m1"), 10)
        changed = windows["public.w"]
        kept = reader.drop_changed(text, shape, changed)
        await reader.close()
        await conn.close()
        await source.close()
        return windows, changed, kept

    windows, changed, kept = asyncio.run(scenario())
    assert windows["public.other"] == {("5",)}
    assert changed == {("3",), ("4",), ("7",)}
    ids = sorted(int(i) for i in kept.column("id").to_pylist())
    assert ids == [i for i in range(1, 21) if i not in (3, 4, 7)]
    assert kept.column_names == ["id", "v"]
