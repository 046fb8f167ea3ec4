"""The runner's queue logic, with an in-memory source and pipeline (no server needed)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch
from syncengine.config.models import BackfillConfig, BatchConfig
from syncengine.errors import TargetUnavailable
from syncengine.runtime import runner
from syncengine.runtime.copypace import StreamLag
from syncengine.runtime.phases import PhaseClock
from syncengine.state import SQLiteStateStore
from syncengine.state.base import Chunk
from tests.unit.process_halves import ProcessHalves


def batch(i: int) -> ChangeBatch:
    return ChangeBatch.build(
        "t",
        pa.table({"id": [i]}),
        ops=["c"],
        positions=[f"{i:08d}"],
        key=["id"],
        meta={"resume": f"{i:08d}"},
    )


class Source:
    stream_name = "mem"

    def __init__(self, count: int) -> None:
        self.count = count
        self.acked: list[str] = []

    async def stream(self, start, until=None):
        for i in range(self.count):
            yield batch(i)

    def want(self):  # the runner's idle hint: a fake source has nothing held
        pass

    async def acknowledge(self, position: str) -> None:
        self.acked.append(position)


class Pipeline(ProcessHalves):
    def __init__(
        self,
        source: Source,
        fail_after: int | None = None,
        delay: float = 0.0,
        timeout: float = 300.0,
    ) -> None:
        self.source = source
        self.name = "p"
        self.config = SimpleNamespace(
            batch=BatchConfig(max_rows=1, timeout=timeout), backfill=BackfillConfig()
        )
        self.fail_after = fail_after
        self.delay = delay
        self.applied: list[str] = []
        self.groups = 0  # committed
        self.phases = PhaseClock()
        self.state = SQLiteStateStore(":memory:")
        self.target: object = SimpleNamespace()  # no raw chunks, no key after the load
        self.stream_lag = StreamLag()

    async def process(self, group, position, target=None):
        await asyncio.sleep(self.delay)
        if self.fail_after is not None and self.groups >= self.fail_after:
            raise TargetUnavailable("target went away")
        self.applied.extend(b.last_position for b in group)
        self.groups += 1
        return SimpleNamespace(applied={"t": len(group)}, read=len(group))


def test_every_batch_applied_in_order_and_acknowledged_after():
    source = Source(50)
    pipeline = Pipeline(source)
    asyncio.run(runner.stream(pipeline, None))
    assert pipeline.applied == [f"{i:08d}" for i in range(50)]
    assert source.acked[-1] == f"{49:08d}"


def test_failure_with_a_full_queue_surfaces_instead_of_deadlocking():
    pipeline = Pipeline(Source(10_000), fail_after=3, delay=0.01)

    async def scenario():
        await asyncio.wait_for(runner.stream(pipeline, None), timeout=10)

    with pytest.raises(TargetUnavailable):
        asyncio.run(scenario())
    # three groups committed, in order; none after the failure
    assert pipeline.groups == 3
    assert pipeline.applied == [f"{i:08d}" for i in range(len(pipeline.applied))]
    assert 3 <= len(pipeline.applied) <= 3 * runner.GROUP_BATCHES


def test_a_silent_target_times_out_as_retriable():
    pipeline = Pipeline(Source(5), delay=5, timeout=0.2)
    with pytest.raises(TargetUnavailable, match="presumed lost"):
        asyncio.run(runner.stream(pipeline, None))


def test_stop_event_drains_what_was_read_and_exits():
    source = Source(20)
    pipeline = Pipeline(source, delay=0.01)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(runner.stream(pipeline, None, stop=stop))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    applied = pipeline.applied
    assert applied == [f"{i:08d}" for i in range(len(applied))], "in order, no gaps"
    assert source.acked and source.acked[-1] == applied[-1]


class SnapshotSource(Source):
    """Two copied rows, then the deletes a reconciled snapshot sends (F15)."""

    async def snapshot(self, tables, where, parallel):
        yield batch(1)
        yield batch(2)
        deletes = batch(3)
        yield ChangeBatch(deletes.table, deletes.data, deletes.key, {"deletes": True})

    async def snapshot_position(self) -> str:
        return "00000002"


def test_backfill_counts_copied_rows_not_the_deletes_it_sends():
    source = SnapshotSource(0)
    pipeline = Pipeline(source)

    async def checkpoint() -> str:
        return "00000002"

    pipeline.checkpoint = checkpoint  # type: ignore[attr-defined]
    copied = asyncio.run(runner.backfill(pipeline))  # type: ignore[arg-type]
    assert copied == 2
    assert pipeline.applied == ["00000001", "00000002", "00000003"]  # the deletes still apply


def test_backfill_after_a_finished_one_starts_over_but_an_interrupted_one_resumes():
    """Chunk progress of a table whose chunks are all done is cleared only when the target
    holds a checkpoint (a backfill finished); without one the source must resume (F25)."""
    source = SnapshotSource(0)
    pipeline = Pipeline(source)
    progress = [
        Chunk("done_t", 0, None, "5", "done", 5),
        Chunk("done_t", 1, "5", None, "done", 2),
        Chunk("open_t", 0, None, "5", "done", 5),
        Chunk("open_t", 1, "5", None, "pending", 0),
    ]
    pipeline.state.put_chunks("p", progress)
    stored: list[str | None] = [None]

    async def checkpoint() -> str | None:
        return stored[0]

    async def apply(writes, checkpoint) -> None:
        stored[0] = checkpoint.position

    pipeline.checkpoint = checkpoint  # type: ignore[attr-defined]
    pipeline.target = SimpleNamespace(apply=apply)  # type: ignore[attr-defined]
    pipeline.stream_name = source.stream_name  # type: ignore[attr-defined]
    asyncio.run(runner.backfill(pipeline))  # type: ignore[arg-type]
    assert pipeline.state.get_chunks("p") == progress  # no checkpoint: an interrupted one
    assert stored == ["00000002"]  # ...which ends with the snapshot's checkpoint
    asyncio.run(runner.backfill(pipeline))  # type: ignore[arg-type]
    assert pipeline.state.get_chunks("p") == progress[2:]


def test_side_batches_interleave_and_no_stream_batch_is_lost():
    """Side (table snapshot) batches are applied between stream groups, each before the next
    is asked for; a stream batch queued while a side batch applies is not dropped."""

    class Paced(Source):
        async def stream(self, start, until=None):  # arrives while a side batch applies
            for i in range(self.count):
                await asyncio.sleep(0.001)
                yield batch(i)

    source = Paced(300)
    pipeline = Pipeline(source, delay=0.004)
    asked: list[int] = []

    async def side():
        for i in range(40):
            asked.append(len(pipeline.applied))
            yield ChangeBatch.build(
                "t", pa.table({"id": [i]}), ops=["r"], positions=[f"s{i:07d}"], key=["id"]
            )

    asyncio.run(runner.stream(pipeline, None, side=side()))
    stream_rows = [p for p in pipeline.applied if not p.startswith("s")]
    side_rows = [p for p in pipeline.applied if p.startswith("s")]
    assert stream_rows == [f"{i:08d}" for i in range(300)]
    assert side_rows == [f"s{i:07d}" for i in range(40)]
    # each side batch was asked for only once the one before it was applied
    assert all(b > a for a, b in zip(asked, asked[1:], strict=False))
    first_side = pipeline.applied.index("s0000000")
    assert first_side < len(pipeline.applied) - 1  # interleaved, not all at the end


def test_a_ready_stream_group_goes_before_a_ready_side_batch_and_they_alternate():
    """A stream group that is ready when a side batch is goes first (it would otherwise wait a
    whole slice); after it the side batch goes, so neither starves while both stay ready."""
    batches = 12 * runner.GROUP_BATCHES  # 12 groups: a turn for each of the 10 side batches
    source = Source(batches)  # every stream batch is ready at once
    pipeline = Pipeline(source, delay=0.002)

    async def side():
        for i in range(10):
            yield ChangeBatch.build(
                "t", pa.table({"id": [i]}), ops=["r"], positions=[f"s{i:07d}"], key=["id"]
            )

    asyncio.run(runner.stream(pipeline, None, side=side()))
    kinds = "".join("s" if p.startswith("s") else "g" for p in pipeline.applied)
    assert kinds.count("s") == 10 and kinds.count("g") == batches
    first_side = kinds.index("s")
    assert first_side >= 1  # the ready group went first
    # from the first side batch on, never two side batches in a row while groups are left
    assert "ss" not in kinds[: kinds.rindex("g")]


def test_a_registered_tables_side_batches_go_beside_while_groups_commit(monkeypatch):
    """After a table's first side batch (applied between groups, where its table is created),
    its next batches are applied on the target's second connection: stream groups commit
    while one of them is in flight, each is asked for only after the one before committed,
    and the table's lock is released when the stream ends."""
    from syncengine.runtime import beside

    monkeypatch.setattr(beside, "can_go_beside", lambda pipeline, table: True)

    class Lane:
        closed = False

        async def close(self) -> None:
            Lane.closed = True

    class Paced(Source):
        async def stream(self, start, until=None):
            for i in range(self.count):
                await asyncio.sleep(0.002)
                yield batch(i)

    class Beside(Pipeline):
        def __init__(self, source: Source) -> None:
            super().__init__(source)
            self.target = SimpleNamespace(shared_tables=set(), beside=Lane)
            self.log: list[tuple[str, str, float, float]] = []  # (where, first position, times)

        def mappings_for(self, table):
            return [(0, SimpleNamespace(target_name="target_" + table))]

        async def process(self, group, position, target=None):
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(0.02 if target is not None else 0.003)
            where = "lane" if target is not None else "main"
            self.log.append(
                (where, group[0].last_position, started, asyncio.get_running_loop().time())
            )
            self.applied.extend(b.last_position for b in group)
            return SimpleNamespace(applied={"t": len(group)}, read=len(group))

    pipeline = Beside(Paced(150))
    asked: list[int] = []

    async def side():
        for i in range(6):
            asked.append(len([e for e in pipeline.log if e[0] == "lane"]))
            yield ChangeBatch.build(
                "c", pa.table({"id": [i]}), ops=["r"], positions=[f"s{i:07d}"], key=["id"]
            )

    asyncio.run(runner.stream(pipeline, None, side=side()))  # type: ignore[arg-type]
    side_log = [e for e in pipeline.log if e[1].startswith("s")]
    assert [e[1] for e in side_log] == [f"s{i:07d}" for i in range(6)]
    assert side_log[0][0] == "main" and all(e[0] == "lane" for e in side_log[1:])
    assert asked == [0, 0, 1, 2, 3, 4]  # the next one only after the one before committed
    stream_rows = [p for p in pipeline.applied if not p.startswith("s")]
    assert stream_rows == [f"{i:08d}" for i in range(150)]
    groups = [e for e in pipeline.log if e[0] == "main" and not e[1].startswith("s")]
    overlapped = [g for g in groups for s in side_log[1:] if s[2] < g[2] and g[3] < s[3]]
    assert overlapped  # groups committed while a lane slice was in flight
    assert Lane.closed and not pipeline.target.shared_tables
