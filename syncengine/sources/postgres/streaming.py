"""The change stream: START_REPLICATION → pgoutput decoder → assembler → ChangeBatches.

Timers, all driven by the socket wait's timeout (no busy loop):

* pending rows (or a new commit boundary) are flushed ``max_wait`` seconds after they appeared,
  or as soon as the stream has been quiet for :data:`QUIET` seconds outside a transaction with
  a commit boundary pending, or at the first commit after the applier said it is idle
  (:meth:`ReplicationStream.want`): groups stay small when the source is quiet or the target
  keeps up (latency) and grow to ``max_rows`` / ``max_wait`` while the applier is busy
  (throughput: what arrives meanwhile makes the next group);
* a standby status update goes out every ``status_interval`` seconds, and whenever the
  runtime acknowledges (see :meth:`PostgresSource.acknowledge`);
* a heartbeat message every ``heartbeat`` seconds keeps an idle slot advancing.

With ``until`` the stream ends after the first commit whose end LSN is at or beyond it. A
transactional marker message written at start guarantees such a commit exists even on an idle
database; a keepalive whose WAL end passes ``until`` outside a transaction also ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import psycopg
from psycopg import sql

from syncengine.changes import DRAIN_END, ChangeBatch
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.postgres import admin
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.replication import ReplicationStream
from syncengine.sources.postgres.wire import Keepalive, format_lsn

#: seconds without a message after which committed pending rows are flushed before ``max_wait``
QUIET = 0.01


async def start_replication(
    repl: psycopg.AsyncConnection, slot: str, publication: str, start: int
) -> float:
    """Start streaming ``slot`` from ``start``; the walsender's ``wal_sender_timeout`` in
    seconds, asked first (:meth:`ReplicationStream.pace` keeps the status updates within it)."""
    timeout = await admin.sender_timeout(repl)
    options = sql.SQL("proto_version '1', publication_names {}, messages 'true'").format(
        sql.Literal(f'"{publication}"')
    )
    command = sql.SQL("START_REPLICATION SLOT {} LOGICAL {} ({})").format(
        sql.Identifier(slot), sql.SQL(format_lsn(start)), options
    )
    await repl.cursor().execute(command)
    return timeout


#: a slot still held by a departing walsender: tries and seconds between them (about 10 s)
SLOT_BUSY_TRIES = 40
SLOT_BUSY_WAIT = 0.25


async def stream_changes(
    connect: Callable[..., Awaitable[psycopg.AsyncConnection]],
    slot: str,
    publication: str,
    start: int,
    until: int | None,
    assembler: ChangeAssembler,
    max_wait: float,
    heartbeat: float,
    on_open: Callable[[ReplicationStream | None], None],
    on_commit: Callable[[po.Commit], None] | None = None,
    phases: PhaseClock | None = None,
    linger: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[ChangeBatch]:
    """Yield batches from ``start``; ``on_open`` hands the live stream to the source for acks.
    ``phases`` gets the ``decode`` seconds: handling what libpq buffered, read per burst and
    paused while a batch is handed out (never a clock read per message). ``linger``: awaited
    once ``until`` is reached and its last batch taken, before the stream closes (the decode
    process keeps it open for the acknowledgements of what the applier still applies)."""
    repl = await connect(replication=True)
    side: psycopg.AsyncConnection | None = None
    stream: ReplicationStream | None = None
    paced = 0.0  # the walsender's timeout
    try:
        for attempt in range(SLOT_BUSY_TRIES):
            try:
                paced = await start_replication(repl, slot, publication, start)
                break
            except psycopg.errors.ObjectInUse as exc:
                # the walsender of a consumer that just died or closed holds the slot until it
                # notices; it lets go within moments, so wait rather than fail the start
                if attempt == SLOT_BUSY_TRIES - 1:
                    raise map_error(exc, f"starting replication from slot {slot}") from exc
                await repl.close()
                await asyncio.sleep(SLOT_BUSY_WAIT)
                repl = await connect(replication=True)
            except psycopg.Error as exc:
                raise map_error(exc, f"starting replication from slot {slot}") from exc
        stream = ReplicationStream(repl, start)
        stream.pace(paced)
        on_open(stream)
        stream.send_status()
        if until is not None or heartbeat > 0:
            side = await connect()
        if until is not None and side is not None:
            await admin.emit_heartbeat(side, "until")
        dirty_since: float | None = None
        due = False  # a flush is due now (want(), at a commit)
        last_beat = heard = time.monotonic()
        quiet = min(QUIET, max_wait)
        while True:
            wake = stream.last_status + stream.status_interval
            if dirty_since is not None:
                wake = min(wake, dirty_since + max_wait)
                if _committed_pending(assembler):
                    wake = min(wake, heard + quiet)
            if heartbeat > 0:
                wake = min(wake, last_beat + heartbeat)
            message = await stream.read(wake - time.monotonic())
            burst = time.perf_counter()
            got = message is not None
            # everything libpq already buffered is handled before looking at the clock again
            while message is not None:
                if type(message) is bytes:
                    payload = message
                    decoded = po.decode(payload) if payload and payload[0] == 0x43 else None  # C
                    fed = assembler.feed(decoded) if decoded else assembler.feed_payload(payload)
                    for batch in fed:
                        if phases is not None:
                            phases.add("decode", time.perf_counter() - burst)
                        yield batch
                        burst = time.perf_counter()
                    if isinstance(decoded, po.Commit):
                        if on_commit is not None:
                            on_commit(decoded)
                        if until is not None and decoded.end_lsn >= until:
                            for batch in _ending(assembler.flush(idle=True)):
                                yield batch
                            if linger is not None:
                                await linger()
                            return
                        # the applier is idle: no reason to hold rows (flushed below)
                        due, stream.wanted = stream.wanted, False
                    if dirty_since is None and (
                        assembler.pending_rows or assembler.boundary != assembler.emitted
                    ):
                        dirty_since = time.monotonic()
                elif (
                    until is not None
                    and isinstance(message, Keepalive)
                    and message.end >= until
                    and not assembler.in_transaction
                ):
                    for batch in _ending(assembler.flush(idle=True)):
                        yield batch
                    if linger is not None:
                        await linger()
                    return
                if due or (dirty_since is not None and time.monotonic() - dirty_since >= max_wait):
                    break
                batches, message = stream.read_rows(assembler.take_rows)
                for batch in batches:
                    if phases is not None:
                        phases.add("decode", time.perf_counter() - burst)
                    yield batch
                    burst = time.perf_counter()
            now = time.monotonic()
            if got:
                heard = now  # quiet counts from the end of what libpq had buffered
            if due or (
                dirty_since is not None
                and (
                    now - dirty_since >= max_wait
                    or (now - heard >= quiet and _committed_pending(assembler))
                )
            ):
                due = False
                dirty_since = None
                for batch in assembler.flush(idle=True):
                    if phases is not None:
                        phases.add("decode", time.perf_counter() - burst)
                    yield batch
                    burst = time.perf_counter()
            if phases is not None:
                phases.add("decode", time.perf_counter() - burst)
            stream.check_alive()
            if stream.status_due():
                stream.send_status(reply=True)  # the answer proves the connection is alive
            if heartbeat > 0 and now - last_beat >= heartbeat and side is not None:
                last_beat = now
                await admin.emit_heartbeat(side)
    except psycopg.Error as exc:
        raise map_error(exc, "streaming changes") from exc
    finally:
        on_open(None)
        if stream is not None:
            stream.stop_watching()
            with contextlib.suppress(Exception):
                stream.send_status()
        for conn in (side, repl):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()


def _committed_pending(assembler: ChangeAssembler) -> bool:
    """Outside a transaction, with a commit boundary not yet handed out: a flush now ends the
    group at a commit (it never splits a transaction)."""
    return not assembler.in_transaction and assembler.boundary != assembler.emitted


def _ending(batches: list[ChangeBatch]) -> list[ChangeBatch]:
    """A bounded stream's last batches, the last of them marked :data:`DRAIN_END`."""
    if batches:
        last = batches[-1]
        batches[-1] = replace(last, meta={**last.meta, DRAIN_END: True})
    return batches
