"""Snapshots: consistent under concurrent writes, resumable per chunk, then streamed."""

from __future__ import annotations

import asyncio
import random

import psycopg

from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import (
    DictModel,
    drain,
    execute,
    make_source,
    table_state,
)

SETUP = (
    "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, s text)",
    "INSERT INTO items SELECT g, g, 'row ' || g FROM generate_series(1, 3000) g",
)


async def _writer(dsn: str, stop: asyncio.Event, seed: int) -> int:
    rng = random.Random(seed)
    writes = 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        next_id = 10_000 + seed * 100_000
        while not stop.is_set():
            choice = rng.random()
            target = rng.randint(1, 3000)
            if choice < 0.4:
                await conn.execute("UPDATE items SET v = v + 1, s = 'u' WHERE id = %s", (target,))
            elif choice < 0.6:
                await conn.execute("DELETE FROM items WHERE id = %s", (target,))
            else:
                next_id += 1
                await conn.execute("INSERT INTO items VALUES (%s, 0, 'new')", (next_id,))
            writes += 1
            await asyncio.sleep(0)
    return writes


async def _snapshot_then_stream(source, model, stop_after_batches=None):
    seen_chunks = []
    count = 0
    stream = source.snapshot(parallel=2)
    async for batch in stream:
        model.apply(batch)
        if "chunk" in batch.meta:  # not the deletes a reconciled snapshot sends (F15)
            seen_chunks.append(batch.meta["chunk"])
        count += 1
        if stop_after_batches is not None and count >= stop_after_batches:
            break
    await stream.aclose()
    return seen_chunks


def test_snapshot_under_concurrent_writes_then_stream_equals_source(pg_dsn):
    async def scenario():
        execute(pg_dsn, *SETUP)
        source = make_source(pg_dsn, ["items"], max_rows=200, snapshot_chunk_rows=400)
        await source.open()
        model = DictModel()
        stop = asyncio.Event()
        writers = [asyncio.create_task(_writer(pg_dsn, stop, s)) for s in (1, 2)]
        await asyncio.sleep(0.2)
        chunks = await _snapshot_then_stream(source, model)
        await asyncio.sleep(0.2)
        stop.set()
        writes = sum(await asyncio.gather(*writers))
        position = await source.snapshot_position()
        batches, _ = await drain(source, position)
        for batch in batches:
            model.apply(batch)
        await source.close()
        return model, chunks, writes

    model, chunks, writes = asyncio.run(scenario())
    assert writes > 50 and len(set(chunks)) >= 8
    expected = table_state(pg_dsn, "items", "id")
    assert model.tables["public.items"] == expected


def test_killed_backfill_resumes_at_next_chunk_and_reconciles(pg_dsn, tmp_path):
    async def scenario():
        execute(pg_dsn, *SETUP)
        state = SQLiteStateStore(tmp_path / "state.db")
        model = DictModel()
        first = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        # one chunk per batch here; stop after the 3rd batch, like a killed process
        before = await _snapshot_then_stream(first, model, stop_after_batches=3)
        await first.close()
        done = sorted(c.chunk for c in state.get_chunks("p") if c.status == "done")
        # writes while nobody reads, then the resumed backfill under more writes
        execute(
            pg_dsn,
            "UPDATE items SET v = -1 WHERE id % 7 = 0",
            "DELETE FROM items WHERE id % 11 = 0",
            "INSERT INTO items SELECT g, g, 'late' FROM generate_series(5000, 5100) g",
        )
        second = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await second.open()
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(pg_dsn, stop, 3))
        after = await _snapshot_then_stream(second, model)
        stop.set()
        await writer
        position = await second.snapshot_position()
        batches, _ = await drain(second, position)
        for batch in batches:
            model.apply(batch)
        await second.close()
        return before, done, after, model, state

    before, done, after, model, state = asyncio.run(scenario())
    assert done == sorted(before[:2])  # the 3rd batch was read but never confirmed
    assert not set(done) & set(after)  # completed chunks were not read again
    assert all(c.status == "done" for c in state.get_chunks("p"))
    assert model.tables["public.items"] == table_state(pg_dsn, "items", "id")


def test_keyless_and_composite_key_tables_with_where(pg_dsn):
    async def scenario():
        execute(
            pg_dsn,
            "CREATE TABLE nokey (a int, b text)",
            "INSERT INTO nokey SELECT g, 'x' FROM generate_series(1, 1000) g",
            "CREATE TABLE comp (k1 int, k2 text, v int, PRIMARY KEY (k1, k2))",
            "INSERT INTO comp SELECT g % 10, 'k' || g, g FROM generate_series(1, 1000) g",
            "ALTER TABLE nokey REPLICA IDENTITY FULL",
        )
        source = make_source(pg_dsn, ["nokey", "comp"], snapshot_chunk_rows=90)
        await source.open()
        out = {}
        async for batch in source.snapshot(where="true", parallel=2):
            out.setdefault(batch.table, []).append(batch)
        await source.close()
        return out

    out = asyncio.run(scenario())
    # a keyless table's copy starts by emptying the target (it has no key to upsert by)
    first, *rest = out["public.nokey"]
    assert first.data.column("_op").to_pylist() == ["t"] and first.key == ()
    nokey = sorted(v for b in rest for v in b.data.column("a").to_pylist())
    assert nokey == list(range(1, 1001))
    assert all(set(b.data.column("_op").to_pylist()) == {"r"} for b in rest)
    comp = [(r["k1"], r["k2"]) for b in out["public.comp"] for r in b.data.to_pylist()]
    assert len(comp) == 1000 and len(set(comp)) == 1000
    assert len(out["public.comp"]) >= 10 and out["public.comp"][0].key == ("k1", "k2")


KILLED_CHILD = """
import asyncio, os, signal, sys
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import make_source

async def main():
    state = SQLiteStateStore(sys.argv[2])
    source = make_source(sys.argv[1], ["items"], state, max_rows=500, snapshot_chunk_rows=500)
    await source.open()
    seen = 0
    async for batch in source.snapshot(parallel=2):
        print(batch.meta["chunk"], flush=True)
        seen += 1
        if seen == 4:
            os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_backfill_killed_by_sigkill_resumes_without_rereading(pg_dsn, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    execute(pg_dsn, *SETUP)
    state_path = tmp_path / "state.db"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, pg_dsn, str(state_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.returncode == -9, child.stderr
    emitted = [int(line) for line in child.stdout.split()]
    assert len(emitted) == 4

    async def resume():
        state = SQLiteStateStore(state_path)
        source = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await source.open()
        ids, chunks = [], []
        async for batch in source.snapshot(parallel=2):
            chunks.append(batch.meta["chunk"])
            ids.extend(batch.data.column("id").to_pylist())
        await source.close()
        return state, ids, chunks

    state, ids, chunks = asyncio.run(resume())
    done_before = set(emitted[:3])  # the 4th batch was never confirmed by asking for a 5th
    assert not done_before & set(chunks)
    assert emitted[3] in chunks
    assert sorted(set(chunks) | done_before) == list(range(7))  # 3000 rows / 500 + tail
    expected = {i for i in range(1, 3001) if (i - 1) // 500 not in done_before}
    assert set(ids) == expected
    assert all(c.status == "done" for c in state.get_chunks("p"))


def test_scan_reads_current_rows_without_side_effects(pg_dsn):
    execute(
        pg_dsn, "CREATE TABLE sc (id int PRIMARY KEY, n numeric(5,1))", "CREATE TABLE em (id int)"
    )

    async def scenario():
        execute(pg_dsn, "INSERT INTO sc SELECT g, g / 10.0 FROM generate_series(1, 25) g")
        source = make_source(pg_dsn, ["sc", "em"], max_rows=10)
        infos = await source.tables()
        assert [(i.name, i.key) for i in infos] == [("public.sc", ("id",)), ("public.em", ())]
        assert infos[0].schema.field("n").metadata == {b"pg_type": b"numeric(5,1)"}
        await source.close()
        batches = [b async for b in source.scan("sc")]
        empty = [b async for b in source.scan("em")]
        with psycopg.connect(pg_dsn) as conn:
            slots = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
            ).fetchone()[0]
        return batches, empty, slots

    batches, empty, slots = asyncio.run(scenario())
    assert [b.num_rows for b in batches] == [10, 10, 5] and slots == 0
    assert str(batches[0].data.schema.field("n").type) == "decimal128(5, 1)"
    assert len(empty) == 1 and empty[0].num_rows == 0


def test_scan_of_some_columns_reads_them_and_the_key(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE sn (b text, a int, pad text, c int, PRIMARY KEY (a, c))",
        "INSERT INTO sn SELECT 'x' || g, g, repeat('p', 100), -g FROM generate_series(1, 25) g",
    )

    async def scenario():
        source = make_source(pg_dsn, ["sn"], max_rows=10)
        narrow = [b async for b in source.scan("sn", ["b"])]
        whole = [b async for b in source.scan("sn")]
        await source.close()
        return narrow, whole

    narrow, whole = asyncio.run(scenario())
    assert [b.num_rows for b in narrow] == [10, 10, 5]
    assert narrow[0].rows.schema.names == ["b", "a", "c"]  # table order, key added
    assert whole[0].rows.schema.names == ["b", "a", "pad", "c"]
    assert narrow[0].key == ("a", "c")
    got = sorted(
        r for b in narrow for r in zip(*(b.data.column(c).to_pylist() for c in "bac"), strict=True)
    )
    assert got == sorted((f"x{g}", g, -g) for g in range(1, 26))
