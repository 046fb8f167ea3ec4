"""A target's end of a fan-out pipeline: a source that reads the JetStream stream.

Each target's pipeline (``<name>.<target>``) reads every partition of the stream through its
own durable pull consumer, in stream order, and turns the messages back into the reader's
groups (:mod:`.assembler`). It runs as any pipeline does: it commits its stream position
with its data in the target (the target's checkpoint), and acknowledges the consumer only
after that commit. At each start the consumer is re-pointed at the message after the
target's checkpoint, which is the truth; the consumer's acknowledgements only show NATS tools
how far each target has come. A target that is slow or stopped holds nothing back: the
reader and the other targets go on, the stream keeps the changes for ``fanout.max_age``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from syncengine.changes import ChangeBatch
from syncengine.cluster.fanout import connect as nats_link
from syncengine.cluster.fanout.assembler import Assembler, parse_position, position
from syncengine.cluster.fanout.wire import POSITION, all_subjects, checkpoint_subject, decode
from syncengine.config.fanout import FanoutConfig
from syncengine.errors import HistoryLost, SourceUnavailable, UsageError
from syncengine.sources.base import ChangeSource, SourceLag, TableInfo

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger("syncengine.fanout")

FETCH_MESSAGES = 256
FETCH_SECONDS = 1.0
#: a delivered message not acknowledged for this long is delivered again (and skipped here,
#: by its sequence); acknowledgements follow target commits, which a stopped target delays
ACK_WAIT_SECONDS = 3600.0


class JetStreamSource:
    """Reads one pipeline's stream for one target (see the module docstring)."""

    def __init__(
        self,
        pipeline: str,
        config: FanoutConfig,
        reader: str,
        tables: list[str],
        upstream: ChangeSource | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: the reader's source, never opened here: ``verify`` scans it (no side effects)
        self.upstream = upstream
        self.config = config
        self.jetstream = config.stream_name(reader)
        self.stream_name = f"jetstream:{self.jetstream}"
        self.durable = re.sub(r"[^A-Za-z0-9_-]", "_", pipeline)
        self.table_names = tables
        self.client: Client | None = None
        self.js: JetStreamContext | None = None
        #: delivered messages that ended a batch the runtime may commit, by stream sequence
        self._unacked: dict[int, Any] = {}
        self.row_filters = None  # the runtime sets it; the stream carries every row
        self.phases = None

    async def open(self) -> None:
        from nats.js.errors import NotFoundError

        async with nats_link.translated(SourceUnavailable, f"JetStream stream {self.jetstream}"):
            self.client, self.js = await nats_link.connect(
                self.config, f"syncengine {self.pipeline}", SourceUnavailable
            )
            try:
                await self.js.stream_info(self.jetstream)
            except NotFoundError:
                raise SourceUnavailable(
                    f"JetStream stream {self.jetstream} does not exist yet",
                    hint="the fan-out reader creates it when it starts",
                ) from None

    async def close(self) -> None:
        await nats_link.close(self.client)
        self.client = self.js = None

    async def tables(self) -> list[TableInfo]:
        return [TableInfo(name, ()) for name in self.table_names]

    async def snapshot(
        self, tables: Sequence[str] | None = None, where: str | None = None, parallel: int = 2
    ) -> AsyncIterator[ChangeBatch]:
        """Nothing: the reader's snapshot is in the stream, read like any change."""
        if tables or where:
            raise UsageError(
                f"{self.pipeline} applies the fan-out stream: back-fill the reader's pipeline "
                "(its snapshot reaches every target through the stream)"
            )
        return
        yield

    async def snapshot_position(self) -> str | None:
        return position("", 0)  # the stream's beginning

    async def stream(
        self, start: str | None, until: str | None = None
    ) -> AsyncIterator[ChangeBatch]:
        source, seq = parse_position(start)
        stop_at = parse_position(until)[1] if until else None
        assembler = Assembler(source=source, idle_table=self.table_names[0])
        subscription = await self._subscribe(seq)
        last, dropped = seq, 0
        while stop_at is None or last < stop_at:
            async with nats_link.translated(SourceUnavailable, f"reading {self.jetstream}"):
                try:
                    messages = await subscription.fetch(FETCH_MESSAGES, timeout=FETCH_SECONDS)
                except TimeoutError:  # nothing new (the client reconnects by itself)
                    continue
            for message in messages:
                at = message.metadata.sequence.stream
                if at <= last:
                    continue  # delivered again (ack wait passed): already handed on
                last = at
                if message.subject == checkpoint_subject(self.jetstream):
                    headers = message.headers or {}
                    batches = assembler.checkpoint(at, headers[POSITION])
                else:
                    batches = assembler.data(at, decode(message.headers or {}, message.data))
                if assembler.dropped > dropped:
                    log.info(
                        "%s: dropped %d message(s) of a group its reader did not finish or "
                        "published twice (the rows come again in the group that follows)",
                        self.pipeline, assembler.dropped - dropped,
                    )  # fmt: skip
                    dropped = assembler.dropped
                if batches:
                    self._unacked[at] = message
                for batch in batches:
                    yield batch

    async def _subscribe(self, after: int) -> Any:
        """The durable consumer, re-pointed at the message after sequence ``after``."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        js = self._js()
        async with nats_link.translated(SourceUnavailable, f"consumer {self.durable}"):
            info = await js.stream_info(self.jetstream)
            first = info.state.first_seq
            if after < info.state.last_seq and after + 1 < first:
                raise HistoryLost(
                    f"{self.pipeline}: the stream {self.jetstream} no longer holds the changes "
                    f"after sequence {after} (it starts at {first}; fanout.max_age passed)",
                    hint="reset this target's checkpoint and back-fill the reader again",
                )
            try:
                await js.delete_consumer(self.jetstream, self.durable)
            except NotFoundError:
                pass
            await js.add_consumer(
                self.jetstream,
                ConsumerConfig(
                    durable_name=self.durable,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=after + 1,
                    ack_policy=AckPolicy.ALL,
                    ack_wait=ACK_WAIT_SECONDS,
                    max_ack_pending=-1,
                    filter_subject=all_subjects(self.jetstream),
                ),
            )
            return await js.pull_subscribe_bind(durable=self.durable, stream=self.jetstream)

    def want(self) -> None:
        """Nothing held to hand over early: each fetched message goes out as it arrives."""

    async def acknowledge(self, position: str) -> None:
        """The target committed through ``position``: acknowledge the consumer up to it."""
        seq = parse_position(position)[1]
        message = self._unacked.get(seq)
        for done in [s for s in self._unacked if s <= seq]:
            del self._unacked[done]
        if message is not None:
            async with nats_link.translated(SourceUnavailable, f"consumer {self.durable}"):
                await message.ack()

    async def current_position(self) -> str:
        js = self._js()
        async with nats_link.translated(SourceUnavailable, f"JetStream stream {self.jetstream}"):
            info = await js.stream_info(self.jetstream)
        return position("", info.state.last_seq)

    async def lag(self, acknowledged: str | None) -> SourceLag:
        js = self._js()
        async with nats_link.translated(SourceUnavailable, f"JetStream stream {self.jetstream}"):
            info = await js.stream_info(self.jetstream)
        behind = max(0, info.state.last_seq - parse_position(acknowledged)[1])
        return SourceLag(acknowledged, details={"messages_behind": behind})

    def scan(self, table: str, columns: Sequence[str] | None = None) -> AsyncIterator[ChangeBatch]:
        """The source database's rows (the stream has no current rows): ``verify`` of a
        target's pipeline compares its target with the source, through its mappings."""
        if self.upstream is None:
            raise UsageError(f"{self.pipeline} reads a fan-out stream: nothing to scan")
        return self.upstream.scan(table, columns)

    def _js(self) -> JetStreamContext:
        if self.js is None:
            raise SourceUnavailable(f"{self.pipeline}: not connected to NATS")
        return self.js
