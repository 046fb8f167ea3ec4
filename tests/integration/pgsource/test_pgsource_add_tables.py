"""Tables added to a running stream (``PostgresSource.add_tables``, a reload that only adds
tables): their changes arrive on the same stream from the ALTER on, decoded with the key the
catalog gives (a keyless table's REPLICA IDENTITY FULL flags every column, but it stays keyless)
and their user types' definitions, in this process and in the decode process alike."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pytest

from syncengine.errors import FatalError
from syncengine.sources.base import resume_position
from syncengine.sources.postgres.decodespawn import ENV
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source


async def wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_tables_join_the_running_stream_with_their_keys_and_types(pg_dsn, monkeypatch, mode):
    monkeypatch.setenv(ENV, mode)
    execute(
        pg_dsn,
        "CREATE DOMAIN hot_qty AS int CHECK (VALUE > 0)",
        "CREATE TABLE hot_a (id int PRIMARY KEY, v text)",
        "CREATE TABLE hot_b (id int, v text)",
        "ALTER TABLE hot_b REPLICA IDENTITY FULL",
        "CREATE TABLE hot_c (id int PRIMARY KEY, qty hot_qty)",
        "INSERT INTO hot_b VALUES (1, 'before')",  # before the add: never streamed
    )

    async def scenario():
        # what a stream that captured every table from the start decodes, for comparison
        fresh = make_source(pg_dsn, ["public.hot_a", "public.hot_b", "public.hot_c"], pipeline="f")
        await fresh.open()
        _, fresh_start = await drain(fresh, None)
        source = make_source(pg_dsn, ["public.hot_a"])
        await source.open()
        _, start = await drain(source, None)
        await source.close()
        execute(pg_dsn, "INSERT INTO hot_a VALUES (1, 'x')")
        stream = source.stream(start)
        seen: dict[str, list] = {}

        async def read() -> None:  # as the runtime's reader task: the stream is always read
            async for batch in stream:
                if batch.num_rows:
                    seen.setdefault(batch.table, []).append(batch)
                resume = resume_position(batch)
                if resume:
                    await source.acknowledge(resume)

        reader = asyncio.create_task(read())
        await wait_until(lambda: "public.hot_a" in seen)
        wider = source.config.with_table_names(["public.hot_a", "hot_b", "public.hot_c"])
        added = await asyncio.wait_for(source.add_tables(wider), 30)
        assert await source.add_tables(wider) == []  # nothing more to add
        execute(
            pg_dsn,
            "INSERT INTO hot_b VALUES (2, 'after')",
            "UPDATE hot_b SET v = 'changed' WHERE id = 2",
            "INSERT INTO hot_c VALUES (7, 3)",
            "INSERT INTO hot_a VALUES (2, 'y')",
        )
        await wait_until(lambda: sum(b.num_rows for b in seen["public.hot_a"]) == 2)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await source.close()
        expected, _ = await drain(fresh, fresh_start)
        await fresh.close()
        return added, seen, source, [b for b in expected if b.table == "public.hot_c"]

    added, seen, source, expected = asyncio.run(scenario())
    assert added == ["public.hot_b", "public.hot_c"]
    assert source.tables_ == ["public.hot_a", "public.hot_b", "public.hot_c"]
    hot_b = [row for b in seen["public.hot_b"] for row in b.rows.to_pylist()]
    assert [(r["id"], r["v"]) for r in hot_b] == [(2, "after"), (2, "changed")]
    assert all(b.key == () for b in seen["public.hot_b"])  # the catalog's key, not the flags
    (hot_c,) = seen["public.hot_c"]
    assert hot_c.key == ("id",) and [r["id"] for r in hot_c.rows.to_pylist()] == [7]
    typedefs = json.loads(hot_c.rows.schema.field("qty").metadata[b"pg_typedefs"])
    assert typedefs[-1]["name"] == "hot_qty" and typedefs[-1]["kind"] == "domain"
    (like,) = [b for b in expected if b.num_rows]
    assert hot_c.rows.equals(like.rows, check_metadata=True)


def test_adding_tables_needs_a_running_stream(pg_dsn):
    execute(pg_dsn, "CREATE TABLE idle_a (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(pg_dsn, ["idle_a"])
        await source.open()
        try:
            with pytest.raises(FatalError, match="no stream is running"):
                await source.add_tables(source.config.with_table_names(["idle_a", "idle_b"]))
        finally:
            await source.close()

    asyncio.run(scenario())
