"""Reaching the NATS cluster and the pipeline's stream; NATS errors as syncengine's.

Every NATS failure a retry can fix (a node gone, a leader election, a timeout) becomes the
retriable error of the side that met it, so the daemon reconnects and resumes from the
checkpoint as it does for a lost database. The stream is created by the reader when missing;
it records its partition count, since changing it would send a key's later changes to
another partition than its earlier ones (their order across partitions is not kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from syncengine.cluster import EXTRA_HINT
from syncengine.cluster.fanout.wire import all_subjects
from syncengine.config.fanout import FanoutConfig
from syncengine.errors import FatalError, SyncEngineError, UsageError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger("syncengine.fanout")

#: how long the first connection to the cluster may take
CONNECT_SECONDS = 8.0
#: how long one JetStream request (a publish's acknowledgement, an API call) may take
REQUEST_SECONDS = 10.0
#: JetStream error codes no retry can fix: replicas > 1 on a server that is not clustered
REFUSED_FOR_GOOD = {10074}
_PARTITIONS = re.compile(r"partitions=(\d+)")


def require_nats() -> Any:
    try:
        import nats
    except ImportError:
        raise UsageError("fan-out needs the NATS client", hint=EXTRA_HINT) from None
    return nats


async def connect(
    config: FanoutConfig, client_name: str, error: type[SyncEngineError]
) -> tuple[Client, JetStreamContext]:
    """A client failing over among ``fanout.servers``; ``error`` (the side's retriable error)
    when none answers."""
    nats = require_nats()
    try:
        # once connected the client reconnects by itself, for ever; the first connection
        # gets a deadline (the client alone would retry an unreachable cluster for ever)
        client = await asyncio.wait_for(
            nats.connect(
                servers=list(config.servers),
                name=client_name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_quiet,
                disconnected_cb=_noop,
                reconnected_cb=_noop,
            ),
            CONNECT_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - every way of not connecting is one error
        raise error(
            f"NATS not reachable at any of {len(config.servers)} server(s): "
            f"{type(exc).__name__}: {exc}".rstrip(": "),
            hint="start the NATS cluster or fix fanout.servers",
        ) from None
    return client, client.jetstream(timeout=REQUEST_SECONDS)


async def ensure_stream(js: JetStreamContext, config: FanoutConfig, stream: str) -> None:
    """Create the stream when missing; refuse one made with another partition count."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import APIError, NotFoundError

    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        info = None
    if info is None:
        wanted = StreamConfig(
            name=stream,
            description=f"syncengine fan-out: partitions={config.partitions}",
            subjects=[all_subjects(stream)],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=config.replicas,
            max_age=config.max_age,
            duplicate_window=config.duplicate_window,
        )
        try:
            await js.add_stream(wanted)
        except APIError as exc:
            if exc.err_code not in REFUSED_FOR_GOOD:
                raise  # e.g. too few nodes up for the replicas yet: retried, the reason logged
            raise FatalError(
                f"JetStream refused to create stream {stream}: {exc.description}",
                hint=f"check fanout.replicas ({config.replicas}: at most the cluster's "
                "JetStream nodes) and the servers' JetStream limits",
            ) from None
        log.info("created JetStream stream %s (%d partitions)", stream, config.partitions)
        return
    found = _PARTITIONS.search(info.config.description or "")
    if found and int(found.group(1)) != config.partitions:
        raise FatalError(
            f"JetStream stream {stream} was made with {found.group(1)} partitions, the config "
            f"says {config.partitions}: a key's changes would move to another partition and "
            "lose their order",
            hint="keep fanout.partitions, or give fanout.stream a new name and backfill again",
        )


@contextlib.asynccontextmanager
async def translated(error: type[SyncEngineError], what: str) -> AsyncIterator[None]:
    """NATS and timeout errors inside become ``error`` (retriable), naming ``what``."""
    from nats.errors import Error as NatsError

    try:
        yield
    except SyncEngineError:
        raise
    except (NatsError, TimeoutError, ConnectionError, OSError) as exc:
        raise error(f"{what}: {type(exc).__name__}: {exc}") from None


async def close(client: Client | None) -> None:
    if client is not None and not client.is_closed:
        with contextlib.suppress(Exception):  # closing after a failure must not mask it
            await asyncio.wait_for(client.close(), REQUEST_SECONDS)


async def _quiet(exc: Exception) -> None:
    """The client's own reconnect loop reports each failed attempt; the daemon's log says
    what matters (the retry of the group), so these go to debug."""
    log.debug("nats: %s", exc)


async def _noop() -> None:
    return None
