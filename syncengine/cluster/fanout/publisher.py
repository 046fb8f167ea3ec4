"""The reader's end of a fan-out pipeline: a target whose "database" is the JetStream stream.

The reader is an ordinary pipeline (snapshot, stream, groups cut at commit boundaries,
pause, dead letters); only what it applies to differs. :meth:`JetStreamTarget.apply` splits
each table's changes by key hash into partitions, publishes them (a partition's messages one
after the other, the partitions side by side) and waits until JetStream acknowledged storing
every one of them; then it publishes the group's checkpoint message and waits for that too.
Only then does the runtime acknowledge the position to the source (slot, resume token), so a
crash at any point leaves the source at or before what the stream holds.

The checkpoint lives in the stream (the last message on ``<stream>.checkpoint``), not in a
local file: a reader restarted on another machine resumes where the stream ends. A group
published again after a crash has the same message IDs when it is cut the same way (JetStream
stores it once); cut otherwise, the consumers drop the unfinished first copy
(:mod:`.assembler`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.cluster.fanout import connect as nats_link
from syncengine.cluster.fanout.partition import partitions_of
from syncengine.cluster.fanout.wire import (
    POSITION,
    Message,
    checkpoint_message,
    checkpoint_subject,
    encode,
    with_field_metadata,
)
from syncengine.config.fanout import FanoutConfig
from syncengine.errors import TargetUnavailable
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import fault_point

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger("syncengine.fanout")


class JetStreamTarget:
    """Publishes a pipeline's groups to its stream (see the module docstring)."""

    keeps_state = False
    change_log = True  # every change, in order: the consumers compact and resolve

    def __init__(self, pipeline: str, config: FanoutConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.stream = config.stream_name(pipeline)
        self.client: Client | None = None
        self.js: JetStreamContext | None = None
        #: publishes JetStream answered as duplicates (a group published again)
        self.duplicates = 0

    async def open(self) -> None:
        async with nats_link.translated(TargetUnavailable, f"JetStream stream {self.stream}"):
            self.client, self.js = await nats_link.connect(
                self.config, f"syncengine {self.pipeline} reader", TargetUnavailable
            )
            await nats_link.ensure_stream(self.js, self.config, self.stream)

    async def close(self) -> None:
        await nats_link.close(self.client)
        self.client = self.js = None

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        return spec  # the consumers' targets make their tables

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        return pa.table({name: pa.array([], f.type) for name, f in zip(
            spec.schema.names, spec.schema, strict=True
        )})  # fmt: skip

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        return pa.table({"row_key": [], "row_hash": [], "base": [], "position": []})

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        js = self._js()
        group = checkpoint.position if checkpoint is not None else None
        limit = self.client.max_payload if self.client is not None else 1 << 20
        lanes: dict[int, list[Message]] = {}
        rows = 0
        for write in writes:
            batch = write.batch
            if not batch.num_rows:
                continue
            rows += batch.num_rows
            # the mapping step hands a target the source types (pg_type, bson_type) in the
            # spec, not always in the rows (a Polars round trip drops them): the stream
            # carries only rows
            data = with_field_metadata(batch.data, [write.spec.schema])
            table = ChangeBatch(write.spec.name, data, write.spec.key, batch.meta)
            where = partitions_of(data, write.spec.key, self.config.partitions)
            for partition in np.unique(where).tolist():
                part = table.replace(data.filter(pa.array(where == partition)))
                lanes.setdefault(partition, []).extend(
                    encode(self.stream, part, partition, group, limit)
                )
        async with nats_link.translated(TargetUnavailable, f"publishing to {self.stream}"):
            await asyncio.gather(*(self._publish(js, lane) for lane in lanes.values()))
            if lanes and checkpoint is not None:
                fault_point("jetstream.after_data")  # the group stored, its checkpoint not
            if checkpoint is not None:
                await self._publish(js, [checkpoint_message(self.stream, checkpoint.position)])
        return ApplyResult(upserted=rows)

    async def _publish(self, js: JetStreamContext, messages: list[Message]) -> None:
        """One partition's messages in order: each is stored before the next is sent."""
        for message in messages:
            ack = await js.publish(
                message.subject, message.payload, stream=self.stream, headers=message.headers
            )
            if ack.duplicate:
                self.duplicates += 1

    async def get_checkpoint(self, stream: str) -> str | None:
        """The position of the last group the stream stored completely."""
        from nats.js.errors import NotFoundError

        js = self._js()
        async with nats_link.translated(TargetUnavailable, f"reading {self.stream}"):
            try:
                last = await js.get_last_msg(self.stream, checkpoint_subject(self.stream))
            except NotFoundError:
                return None
        headers = last.headers or {}
        return headers.get(POSITION)

    async def reset_checkpoint(self, stream: str) -> None:
        js = self._js()
        async with nats_link.translated(TargetUnavailable, f"purging {self.stream}"):
            await js.purge_stream(self.stream, subject=checkpoint_subject(self.stream))

    async def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        """Nothing to compare: ``verify`` each target's pipeline (``<name>.<target>``)."""
        return
        yield  # an async generator that yields nothing

    def _js(self) -> JetStreamContext:
        if self.js is None:
            raise TargetUnavailable(f"{self.pipeline}: not connected to NATS")
        return self.js
