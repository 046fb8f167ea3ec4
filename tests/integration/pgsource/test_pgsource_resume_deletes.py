"""Resumed snapshots and keys deleted before their chunk was read: no ghost rows (F15).

A key updated and then deleted after the snapshot position P0 but before its chunk is read has
no row in the chunk; the stream then replays from P0, and its older update used to insert the
key into the target (a ghost) until the replay reached the delete. The snapshot now sends the
deletes made since P0 at their own positions, so the target's fence drops those replays.
"""

from __future__ import annotations

import asyncio

import pytest

from syncengine.changes import ChangeBatch
from syncengine.sources.postgres import snapshot
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source, table_state
from tests.integration.pgsource.test_pgsource_resume_fence import FencedModel, _snapshot

TABLES = {
    "default": ("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, s text)",),  # fmt: skip
    "full": (
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, s text)",
        "ALTER TABLE items REPLICA IDENTITY FULL",
    ),
    "index": (  # no primary key: the replica identity index is the key
        "CREATE TABLE items (id int NOT NULL, v int NOT NULL, s text)",
        "CREATE UNIQUE INDEX items_id ON items (id)",
        "ALTER TABLE items REPLICA IDENTITY USING INDEX items_id",
    ),
}
#: updated then deleted after P0, before the resumed snapshot started
BEFORE_RESUME = "id BETWEEN 1501 AND 3000 AND id % 7 = 0"
#: updated then deleted while the first resumed group is read (chunk 5, read in the second)
WHILE_READING = "id BETWEEN 2501 AND 3000 AND id % 7 = 3"
#: updated, deleted, inserted again before the resume: must survive
REBORN = 2800


class GhostModel(FencedModel):
    """The fenced model, recording every change other than a snapshot row that creates a key
    the model does not hold (with the key's row as of that write)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[int, str, str]] = []

    def apply(self, batch: ChangeBatch) -> None:
        for row in batch.data.to_pylist():
            key = row.get("_before.id") or row["id"]
            fenced = key in self.positions and row["_pos"] <= self.positions[key]
            if row["_op"] not in ("r", "d") and key not in self.rows and not fenced:
                self.created.append((key, row["_op"], row["_pos"]))
        super().apply(batch)


@pytest.mark.parametrize(
    ("identity", "recorded"),
    [*((i, True) for i in sorted(TABLES)), ("default", False)],
    ids=[*sorted(TABLES), "snapshot-older-than-the-delete-publication"],
)
def test_keys_deleted_before_their_chunk_was_read_never_come_back(
    pg_dsn, tmp_path, identity, recorded
):
    """``recorded`` False: the snapshot began before the engine made the delete publication,
    so the deletes since P0 are read through the main publication."""
    execute(
        pg_dsn,
        *TABLES[identity],
        "INSERT INTO items SELECT g, g, 'row ' || g FROM generate_series(1, 3000) g",
    )
    reads, since = snapshot.read_copy, snapshot.deletes_since
    deleted_meanwhile = asyncio.Event()
    publications: list[str] = []

    def deletes_since(source, publication, *args):
        publications.append(publication)
        return since(source, publication, *args)

    async def read_then_delete(conn, query):  # commits inside the first resumed window
        data = await reads(conn, query)
        if not deleted_meanwhile.is_set():
            deleted_meanwhile.set()
            execute(
                pg_dsn,
                f"UPDATE items SET v = v + 1000 WHERE {WHILE_READING}",
                f"DELETE FROM items WHERE {WHILE_READING}",
            )
        return data

    async def scenario():
        state = SQLiteStateStore(tmp_path / "state.db")
        model = GhostModel()
        first = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        await _snapshot(first, model, stop_after=3)  # killed: chunks 0 and 1 done
        await first.close()
        position = await first.snapshot_position()
        if not recorded:
            stream = snapshot.snapshot_stream(first)
            details = state.get_checkpoint("p", stream).details
            state.put_checkpoint("p", stream, position, {"snapshot": details["snapshot"]})
        execute(
            pg_dsn,
            f"UPDATE items SET v = v + 1000 WHERE {BEFORE_RESUME}",
            f"DELETE FROM items WHERE {BEFORE_RESUME}",
            "DELETE FROM items WHERE id % 13 = 0 AND id <= 1000",  # rows the target holds
            f"INSERT INTO items VALUES ({REBORN}, -1, 'reborn')",
        )
        snapshot.read_copy, snapshot.deletes_since = read_then_delete, deletes_since
        try:
            second = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
            await second.open()
            resumed = await _snapshot(second, model)
        finally:
            snapshot.read_copy, snapshot.deletes_since = reads, since
        assert deleted_meanwhile.is_set()
        during = [(k, row["v"]) for k, row in model.rows.items()]
        batches, _ = await drain(second, position)
        for batch in batches:
            model.apply(batch)
        await second.close()
        return resumed, during, model

    gone = {
        (k,)
        for k in range(1501, 3001)
        if (k % 7 == 0 and k != REBORN) or (k >= 2501 and k % 7 == 3)
    }
    assert REBORN % 7 == 0
    resumed, during, model = asyncio.run(scenario())
    assert publications == ["syncengine_p_deletes" if recorded else "syncengine_p"]
    source = table_state(pg_dsn, "items", "id")
    assert not gone & source.keys()
    assert model.created == []  # no ghost: the replay created no key it had no row for
    assert not {(k,) for k, _ in during} & gone
    sent = [r for b in resumed if b.meta.get("deletes") for r in b.data.to_pylist()]
    assert {r["_op"] for r in sent} == {"d"}
    assert {(r["id"],) for r in sent} >= gone  # both the early ones and those while reading
    assert model.rows[REBORN]["v"] == -1  # the delete before its re-insert did not remove it
    assert model.regressions == []
    assert model.values() == {k: row["v"] for (k,), row in source.items()}
