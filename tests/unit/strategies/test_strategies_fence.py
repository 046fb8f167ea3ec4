"""``remote`` without read-back on a target that does not fence on the server (the in-memory
one here; Mongo and SQLite-kept shadows work the same way): only stored positions are read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pyarrow as pa

from syncengine.changes import AT_RESUME, ChangeBatch
from syncengine.config.models import ConflictsConfig
from syncengine.conflicts import ConflictResolver
from syncengine.targets.base import Checkpoint, TableSpec
from syncengine.targets.shadow import FENCE_ONLY
from tests.unit.strategies.conflicts_memtarget import MemoryTarget
from tests.unit.strategies.test_strategies_resolver import SPEC, batch, key, t


class CountingTarget(MemoryTarget):
    def __init__(self) -> None:
        super().__init__()
        self.row_reads = 0
        self.shadow_reads: list[list[str]] = []

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        self.row_reads += 1
        return await super().read_rows(spec, keys)

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        self.shadow_reads.append(list(row_keys))
        return await super().read_shadow(table, row_keys)


def run(resolver: ConflictResolver, target: MemoryTarget, b: ChangeBatch):
    async def go():
        resolved = await resolver.resolve(SPEC, b)
        await target.apply([resolved.write], Checkpoint("s", b.last_position or ""))
        return resolved

    return asyncio.run(go())


def item(i: int, name: str, minute: int = 10) -> dict:
    return {"id": i, "name": name, "qty": i, "updated_at": t(minute)}


def make(tmp_path, strategy: str = "remote", **conf):
    from syncengine.state import SQLiteStateStore

    target = CountingTarget()
    state = SQLiteStateStore(tmp_path / "state.db")
    config = ConflictsConfig(strategy=strategy, **conf)
    return target, state, ConflictResolver("p", target, state, config, fence=True)


def test_remote_reads_no_rows_and_fences_replays(tmp_path):
    target, _, resolver = make(tmp_path)
    run(resolver, target, batch([item(1, "a"), item(2, "b")], ["c", "c"], 1))
    run(resolver, target, batch([item(1, "a2")], ["u"], 3))
    run(resolver, target, batch([{"id": 2}], ["d"], 4))
    replay = run(resolver, target, batch([item(1, "a"), item(2, "b")], ["c", "c"], 1))
    assert replay.write.batch.num_rows == 0  # both stale: 1 at 3, 2's tombstone at 4
    assert target.rows["items"] == {key(1): item(1, "a2")}
    assert target.row_reads == 0
    shadow = target.shadow["items"]
    assert shadow[key(1)] == (FENCE_ONLY, None, f"{3:016X}")
    assert shadow[key(2)] == (None, None, f"{4:016X}")  # a tombstone
    newer = run(resolver, target, batch([item(2, "back")], ["c"], 9))
    assert (newer.conflicts, newer.write.batch.num_rows) == (0, 1)
    assert target.rows["items"][key(2)]["name"] == "back"


def test_hand_edits_are_overwritten_without_being_detected(tmp_path):
    target, state, resolver = make(tmp_path)
    run(resolver, target, batch([item(1, "a")], ["c"], 1))
    target.edit("items", key(1), name="hand")
    r = run(resolver, target, batch([item(1, "src")], ["u"], 2))
    assert (r.conflicts, r.outcomes) == (0, {})
    assert target.rows["items"][key(1)]["name"] == "src"
    assert state.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0
    # ``audit: true`` detects and audits the same situation
    target, state, resolver = make(tmp_path / "audited", audit=True)
    run(resolver, target, batch([item(1, "a")], ["c"], 1))
    target.edit("items", key(1), name="hand")
    r = run(resolver, target, batch([item(1, "src")], ["u"], 2))
    assert (r.conflicts, r.outcomes) == (1, {"remote": 1})
    assert state.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 1


def test_exported_snapshot_rows_read_and_keep_nothing(tmp_path):
    target, _, resolver = make(tmp_path)
    b = batch([item(i, f"n{i}") for i in range(1, 6)], ["r"] * 5, 1)
    run(resolver, target, ChangeBatch(b.table, b.data, b.key, {AT_RESUME: True}))
    assert len(target.rows["items"]) == 5
    assert target.shadow.get("items", {}) == {} and target.shadow_reads == []
    # rows of a reconciled snapshot (positions above the stream's restart) are recorded
    run(resolver, target, batch([item(7, "n7")], ["r"], 20))
    assert target.shadow["items"][key(7)] == (FENCE_ONLY, None, f"{20:016X}")
    run(resolver, target, batch([item(7, "older")], ["u"], 15))
    assert target.rows["items"][key(7)]["name"] == "n7"


def test_a_later_strategy_takes_slim_rows_as_in_step(tmp_path):
    target, state, resolver = make(tmp_path)
    run(resolver, target, batch([item(1, "a"), item(2, "b")], ["c", "c"], 1))
    merge = ConflictResolver("p", target, state, ConflictsConfig(strategy="merge"), fence=True)
    r = run(merge, target, batch([item(1, "a2")], ["u"], 5))
    assert (r.conflicts, target.rows["items"][key(1)]["name"]) == (0, "a2")
    assert target.shadow["items"][key(1)][0].startswith("pl")  # a real hash again
    target.edit("items", key(2), name="hand")
    r = run(merge, target, batch([item(2, "b2")], ["u"], 6))
    assert r.conflicts == 0  # the slim row's key is taken as it is now: no base to merge from


def test_a_group_claims_at_resume_only_if_every_part_does():
    from syncengine.changes import concat_batches

    b = batch([item(1, "a")], ["r"], 1)
    at = ChangeBatch(b.table, b.data, b.key, {AT_RESUME: True, "snapshot": True})
    other = ChangeBatch(b.table, b.data, b.key, {"snapshot": True})
    assert concat_batches([at, at]).meta.get(AT_RESUME)
    mixed = concat_batches([at, other])
    assert AT_RESUME not in mixed.meta and mixed.meta["snapshot"] and mixed.num_rows == 2
