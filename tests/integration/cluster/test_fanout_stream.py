"""The fan-out stream on a real nats-server (one node): what the reader publishes, JetStream
stores once, and a target's consumer reads back as the reader's groups, resuming after its
checkpoint. The three-node cluster with real databases is tests/e2e/test_e2e_fanout.py."""

from __future__ import annotations

import asyncio
import os

import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch, lsn_to_pos
from syncengine.config.fanout import FanoutConfig
from syncengine.sources.base import resume_position
from syncengine.targets.base import Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import ENV, SimulatedCrash
from tests.nats_server import NatsCluster

pytest.importorskip(
    "nats", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

TABLE = "public.t"


def fanout(nats_node: NatsCluster, stream: str) -> FanoutConfig:
    return FanoutConfig(engine="nats", servers=nats_node.urls, partitions=3, stream=stream)


def write(ids: list[int], positions: list[int]) -> TableWrite:
    rows = pa.table({"id": pa.array(ids, pa.int64()), "n": pa.array(ids, pa.int64())})
    batch = ChangeBatch.build(
        TABLE, rows, ops=["u"] * len(ids), positions=[lsn_to_pos(p) for p in positions],
        key=["id"],
    )  # fmt: skip
    spec = TableSpec(TABLE, ("id",), rows.schema)
    return TableWrite(spec, batch)


async def read_all(config: FanoutConfig, start: str | None, until_seq: int) -> list[ChangeBatch]:
    from syncengine.cluster.fanout.assembler import position
    from syncengine.cluster.fanout.consumer import JetStreamSource

    source = JetStreamSource("p.lake", config, "p", [TABLE])
    await source.open()
    out = []
    try:
        async for batch in source.stream(start, position("", until_seq)):
            out.append(batch)
            if resume_position(batch):
                await source.acknowledge(resume_position(batch) or "")
    finally:
        await source.close()
    return out


def test_groups_are_stored_once_and_read_back_whole_after_the_checkpoint(nats_node):
    from syncengine.cluster.fanout.publisher import JetStreamTarget

    config = fanout(nats_node, "groups")

    async def scenario() -> tuple[list[ChangeBatch], list[ChangeBatch], str | None, int]:
        target = JetStreamTarget("p", config)
        await target.open()
        try:
            assert await target.get_checkpoint("slot") is None
            first = write(list(range(1, 40)), list(range(100, 139)))
            await target.apply([first], Checkpoint("slot", lsn_to_pos(138)))
            # the same group again (a reader that died before acknowledging the source)
            await target.apply([first], Checkpoint("slot", lsn_to_pos(138)))
            duplicates = target.duplicates
            # a reader that died mid-group: its data stored, its checkpoint not
            os.environ[ENV] = "jetstream.after_data"
            try:
                await target.apply([write([1, 2], [140, 141])], Checkpoint("s", lsn_to_pos(141)))
            except SimulatedCrash:
                pass
            finally:
                del os.environ[ENV]
            # its successor cuts the same changes into a bigger group
            await target.apply(
                [write([1, 2, 3], [140, 141, 142])], Checkpoint("slot", lsn_to_pos(142))
            )
            checkpoint = await target.get_checkpoint("slot")
            info = await target._js().stream_info("groups")
            last = info.state.last_seq
        finally:
            await target.close()
        everything = await read_all(config, None, last)
        from syncengine.cluster.fanout.assembler import parse_position

        resumed_at = resume_position(everything[0])
        assert resumed_at is not None
        after_first = await read_all(config, resumed_at, last)
        assert parse_position(resumed_at)[0] == lsn_to_pos(138)
        return everything, after_first, checkpoint, duplicates

    everything, after_first, checkpoint, duplicates = asyncio.run(scenario())
    assert checkpoint == lsn_to_pos(142)
    assert duplicates >= 2  # every message of the repeated group, and its checkpoint
    rows = [b for b in everything if b.num_rows]
    assert [sorted(b.data.column("id").to_pylist()) for b in rows] == [
        list(range(1, 40)),
        [1, 2, 3],  # the unfinished copy of 1 and 2 was dropped, not applied twice
    ]
    positions = rows[0].data.column("_pos").to_pylist()
    assert positions == sorted(positions)  # partitions merged back into source order
    assert [sorted(b.data.column("id").to_pylist()) for b in after_first if b.num_rows] == [
        [1, 2, 3]
    ]


def test_a_consumer_whose_changes_aged_out_says_so(nats_node):
    from syncengine.cluster.fanout.assembler import position
    from syncengine.cluster.fanout.publisher import JetStreamTarget
    from syncengine.errors import HistoryLost

    config = fanout(nats_node, "aged")

    async def scenario() -> None:
        target = JetStreamTarget("p", config)
        await target.open()
        try:
            for i in range(3):
                await target.apply([write([i], [10 + i])], Checkpoint("s", lsn_to_pos(10 + i)))
            await target._js().purge_stream("aged", keep=2)
        finally:
            await target.close()
        await read_all(config, position(lsn_to_pos(10), 2), 6)

    with pytest.raises(HistoryLost):
        asyncio.run(scenario())


def test_a_stream_the_cluster_cannot_hold_is_a_config_problem(nats_node):
    """Three replicas on one node: refused once with the reason, not retried for ever."""
    from syncengine.cluster.fanout.publisher import JetStreamTarget
    from syncengine.errors import FatalError

    config = FanoutConfig(engine="nats", servers=nats_node.urls, replicas=3, stream="r3")

    async def scenario() -> None:
        target = JetStreamTarget("p", config)
        try:
            await target.open()
        finally:
            await target.close()

    with pytest.raises(FatalError, match="replicas > 1 not supported") as info:
        asyncio.run(scenario())
    assert "fanout.replicas (3" in str(info.value)
