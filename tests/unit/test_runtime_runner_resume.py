"""Crash, restart from the checkpoint, replay: a key never goes back to an older version (F16).

The real :class:`ChangeAssembler` cuts a pgoutput message stream into batches (by ``max_rows``
and by "timer" flushes landing anywhere, mid-transaction too) and the real runner groups them
into target commits. The target here is in memory and commits a group's rows and its
checkpoint atomically, like the Postgres target. Run 1 "crashes" right after its k-th commit;
run 2 restarts from the stored checkpoint (skipping, as Postgres does, every transaction whose
commit LSN is before it) with other cut sizes. If a commit ever held rows past its checkpoint,
run 2 re-delivers them cut differently, and a group holding only a key's older version
overwrites the newer one already committed: the apply audit of the reliability suite saw
exactly that (a row's INSERT replayed over its first UPDATE).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from types import SimpleNamespace

import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch, pos_to_lsn
from syncengine.config.models import BatchConfig
from syncengine.runtime import runner
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.state import SQLiteStateStore
from tests.unit.pgsource import pgsource_frames as f
from tests.unit.process_halves import ProcessHalves

COLS = [("id", 20, -1, True), ("version", 23, -1, False)]
TABLES = {1: "acct", 2: "ledger"}


class Crash(Exception):
    """The process died right after a commit (before acknowledging)."""


def workload(seed: int, txns: int = 20) -> list[list[tuple[int, int, int]]]:
    """Transactions of (relation oid, key, version) rows over few keys, so keys change often;
    versions go up by one per change of a key (like the suite's ``counter``)."""
    rng = random.Random(seed)
    versions: dict[tuple[int, int], int] = {}
    out = []
    for _ in range(txns):
        rows = []
        for _ in range(rng.choice([1, 1, 2, 3, 7])):
            oid, key = rng.choice([1, 1, 2]), rng.randrange(8)
            version = versions[(oid, key)] = versions.get((oid, key), -1) + 1
            rows.append((oid, key, version))
        out.append(rows)
    return out


class ReplaySource:
    """A slot's worth of WAL: replays every transaction whose commit LSN is at or after the
    requested start, through a fresh assembler, with a "timer" flush every ``every`` messages."""

    stream_name = "slot:test"

    def __init__(self, txns: list[list[tuple[int, int, int]]], max_rows: int, every: int) -> None:
        self.txns = txns
        self.max_rows = max_rows
        self.every = every

    def messages(self, start: int) -> list[bytes]:
        out = [f.relation(oid, "public", name, COLS) for oid, name in TABLES.items()]
        lsn = 0x1000
        for xid, rows in enumerate(self.txns, 1):
            commit_lsn = lsn + 0x100
            end_lsn = commit_lsn + 0x10
            if commit_lsn >= start:  # Postgres skips a commit record that starts before it
                out.append(f.begin(commit_lsn, 0, xid))
                for oid, key, version in rows:
                    make = f.insert if version == 0 else f.update
                    out.append(make(oid, [key, version]))
                out.append(f.commit(commit_lsn, end_lsn, 0))
            lsn = end_lsn
        return out

    async def stream(self, start, until=None):
        assembler = ChangeAssembler(self.max_rows, idle_table="public.acct")
        begin = pos_to_lsn(start.split(".")[0]) if start else 0
        for n, message in enumerate(self.messages(begin), 1):
            for batch in assembler.feed(po.decode(message)):
                yield batch
            if n % self.every == 0:
                for batch in assembler.flush(idle=True):
                    yield batch
            await asyncio.sleep(0)  # let the applier interleave with the reader
        for batch in assembler.flush(idle=True):
            yield batch

    def want(self):  # the runner's idle hint: a fake source has nothing held
        pass

    async def acknowledge(self, position: str) -> None:
        pass


class Target:
    """Rows and checkpoint, committed together; every write logged (key, old, new)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], int] = {}
        self.checkpoint: str | None = None
        self.writes: list[tuple[tuple[str, int], int | None, int]] = []
        #: source positions of every change committed, in commit order
        self.positions: list[str] = []


class Pipeline(ProcessHalves):
    def __init__(self, source: ReplaySource, target: Target, crash_after: int | None) -> None:
        self.source = source
        self.target = target
        self.name = "p"
        self.config = SimpleNamespace(batch=BatchConfig(max_rows=source.max_rows))
        self.crash_after = crash_after
        self.commits = 0
        self.phases = PhaseClock()
        self.state = SQLiteStateStore(":memory:")  # pause requests: none

    async def process(self, group, position, target=None):
        await asyncio.sleep(0)
        latest: dict[tuple[str, int], int] = {}  # compaction: the last change of a key wins
        for batch in group:
            if batch.num_rows:
                self.target.positions.extend(batch.data.column("_pos").to_pylist())
                keys = batch.data.column("id").to_pylist()
                versions = batch.data.column("version").to_pylist()
                for key, version in zip(keys, versions, strict=True):
                    latest[(batch.table, key)] = version
        for key, version in latest.items():  # one atomic commit: rows, then the checkpoint
            old = self.target.rows.get(key)
            if old != version:  # like the target's IS DISTINCT FROM: a replay writes nothing
                self.target.writes.append((key, old, version))
                self.target.rows[key] = version
        if position is not None:
            self.target.checkpoint = position
        self.commits += 1
        if self.crash_after is not None and self.commits >= self.crash_after:
            raise Crash
        return SimpleNamespace(applied={"t": len(latest)}, read=len(latest))


def run(txns, target, max_rows, every, crash_after=None) -> bool:
    """One daemon life from the target's checkpoint; False when it crashed."""
    source = ReplaySource(txns, max_rows, every)
    try:
        asyncio.run(runner.stream(Pipeline(source, target, crash_after), target.checkpoint))
    except Crash:
        return False
    return True


# (max_rows, a "timer" flush every n messages) before the crash, and after the restart
CUTS = [((2, 9), (3, 2)), ((4, 5), (7, 4)), ((3, 2), (11, 7))]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("first", "second"), CUTS)
def test_restart_from_checkpoint_commits_every_change_once(seed, first, second):
    txns = workload(seed)
    final: dict[tuple[str, int], int] = {}
    for rows in txns:
        for oid, key, version in rows:
            final[(f"public.{TABLES[oid]}", key)] = version
    for crash_after in range(1, 100):
        target = Target()
        if run(txns, target, *first, crash_after=crash_after):
            break  # finished before this crash point: every point was tried
        where = f"crash after commit {crash_after}, restart from {target.checkpoint}"
        assert run(txns, target, *second)
        assert target.rows == final, f"{where}: changes lost"
        stale = [(k, old, new) for k, old, new in target.writes if old is not None and new < old]
        assert not stale, f"{where}: older versions written over newer ones: {stale[:5]}"
        twice = sorted(p for p, n in Counter(target.positions).items() if n > 1)
        assert not twice, f"{where}: changes committed twice: {twice[:5]}"
    else:
        pytest.fail("run 1 never finished: raise the crash point limit")


def test_f16_an_insert_is_not_replayed_over_its_first_update():
    """A case the old runner failed, pinned: its 4th commit ended on a batch past its
    checkpoint (acct 1's INSERT and first UPDATE were in it); the restart re-read from the
    checkpoint, cut differently, and committed the INSERT alone: acct 1 went from 1 back to 0."""
    txns = workload(0, txns=60)
    target = Target()
    assert not run(txns, target, 3, 2, crash_after=4)
    assert run(txns, target, 4, 5)
    acct_1 = [(old, new) for key, old, new in target.writes if key == ("public.acct", 1)]
    assert all(new > old for old, new in acct_1 if old is not None), acct_1


# -- the grouping rule itself, with hand-made batches ------------------------------------------


def plain(i: int, resume: bool) -> ChangeBatch:
    meta = {"resume": f"{i:08d}~"} if resume else {}
    return ChangeBatch.build(
        "t", pa.table({"id": [i]}), ops=["c"], positions=[f"{i:08d}"], key=["id"], meta=meta
    )


class ListSource:
    stream_name = "mem"

    def __init__(self, batches: list[ChangeBatch], hang: bool = False) -> None:
        self.batches = batches
        self.hang = hang
        self.acked: list[str] = []

    async def stream(self, start, until=None):
        for batch in self.batches:
            yield batch
        if self.hang:
            await asyncio.Event().wait()  # a live stream: nothing more for now

    def want(self):  # the runner's idle hint: a fake source has nothing held
        pass

    async def acknowledge(self, position: str) -> None:
        self.acked.append(position)


class Recorder(ProcessHalves):
    def __init__(self, source: ListSource, max_rows: int = 1) -> None:
        self.source = source
        self.name = "p"
        self.config = SimpleNamespace(batch=BatchConfig(max_rows=max_rows))
        self.target = SimpleNamespace(grows_groups=True)  # as the Postgres target
        self.groups: list[tuple[list[str], str | None]] = []
        self.phases = PhaseClock()
        self.state = SQLiteStateStore(":memory:")

    async def process(self, group, position, target=None):
        self.groups.append(([b.last_position for b in group], position))
        return SimpleNamespace(applied={"t": len(group)}, read=len(group))


def test_a_group_ends_at_its_last_commit_boundary():
    source = ListSource(
        [plain(1, False), plain(2, False), plain(3, True), plain(4, False)], hang=True
    )
    pipeline = Recorder(source)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(runner.stream(pipeline, None, stop=stop))
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    # batch 4 (no boundary after it) is left to be read again from the checkpoint
    assert pipeline.groups == [(["00000001", "00000002", "00000003"], "00000003~")]
    assert source.acked == ["00000003~"]


def test_a_backlog_is_taken_in_groups_of_up_to_group_batches_batches():
    """Batches already queued (the reader is ahead) are applied a few at a time, each group
    ending at its last boundary; none is larger than ``GROUP_BATCHES × max_rows``."""
    n = 3 * runner.GROUP_BATCHES + 1
    source = ListSource([plain(i, True) for i in range(1, n + 1)])
    pipeline = Recorder(source)
    asyncio.run(runner.stream(pipeline, None))
    sizes = [len(positions) for positions, _ in pipeline.groups]
    assert sizes[0] == runner.GROUP_BATCHES and max(sizes) == runner.GROUP_BATCHES
    assert [p for positions, _ in pipeline.groups for p in positions] == [
        f"{i:08d}" for i in range(1, n + 1)
    ]
    assert source.acked[-1] == f"{n:08d}~"


def test_a_group_grows_past_max_rows_only_by_batches_shaped_like_its_own():
    """Batches of one table whose columns differ (documents with other fields) are joined by
    conversion; past ``max_rows`` a group takes only batches that join as they are."""

    def shaped(i: int, extra: bool) -> ChangeBatch:
        data = {"id": [i], "x": [i]} if extra else {"id": [i]}
        return ChangeBatch.build(
            "t", pa.table(data), ops=["c"], positions=[f"{i:08d}"], key=["id"],
            meta={"resume": f"{i:08d}~"},
        )  # fmt: skip

    n = 3 * runner.GROUP_BATCHES
    source = ListSource([shaped(i, extra=i % 2 == 0) for i in range(1, n + 1)])
    pipeline = Recorder(source)
    asyncio.run(runner.stream(pipeline, None))
    assert [len(positions) for positions, _ in pipeline.groups] == [1] * n


def test_a_trickle_is_applied_as_it_arrives():
    """Idle between batches, a group is what arrived: growing groups is for a backlog only."""

    class Trickle(ListSource):
        async def stream(self, start, until=None):
            for batch in self.batches:
                yield batch
                await asyncio.sleep(0.02)

    source = Trickle([plain(i, True) for i in range(1, 6)])
    pipeline = Recorder(source)
    asyncio.run(runner.stream(pipeline, None))
    assert [len(positions) for positions, _ in pipeline.groups] == [1] * 5


def test_a_transaction_too_big_to_hold_is_committed_in_parts():
    n = runner.HOLD_GROUPS + 3
    source = ListSource([plain(i, False) for i in range(n)] + [plain(n, True)], hang=True)
    pipeline = Recorder(source)

    async def scenario():
        task = asyncio.create_task(runner.stream(pipeline, None))
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(scenario())
    parts = [len(positions) for positions, _ in pipeline.groups]
    assert parts[0] == runner.HOLD_GROUPS and pipeline.groups[0][1] is None
    assert pipeline.groups[-1][1] == f"{n:08d}~" and sum(parts) == n + 1


def test_the_end_of_a_bounded_stream_is_applied_whole():
    source = ListSource([plain(1, True), plain(2, False)])
    pipeline = Recorder(source)
    asyncio.run(runner.stream(pipeline, None))
    assert [positions for positions, _ in pipeline.groups] in (
        [["00000001"], ["00000002"]],
        [["00000001", "00000002"]],
    )
