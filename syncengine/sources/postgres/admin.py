"""Slot and publication lifecycle, up-front checks, retained WAL and lag, heartbeats.

Creating is implicit (``open`` creates what is missing); dropping never is: :func:`drop_slot`
is only called by an explicit command, because a dropped slot loses the stream position.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from syncengine.changes import lsn_to_pos, pos_to_lsn, reserved, reserved_message
from syncengine.errors import FatalError
from syncengine.names import QualifiedName, canonical, did_you_mean
from syncengine.sources.base import SourceLag
from syncengine.sources.postgres import deadline, pubcheck
from syncengine.sources.postgres.wire import format_lsn, parse_lsn

if TYPE_CHECKING:  # the decode process imports this module: not the config models
    from syncengine.config.models import PostgresSourceConfig

log = logging.getLogger("syncengine.sources.postgres")

HEARTBEAT_PREFIX = "syncengine_heartbeat"
WATERMARK_PREFIX = "syncengine_watermark"


def default_name(pipeline: str) -> str:
    return f"syncengine_{pipeline}"


async def catalog_tables(conn: psycopg.AsyncConnection) -> list[QualifiedName]:
    """Every table-like relation outside the system schemas (for "did you mean")."""
    cur = await conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND n.nspname <> 'information_schema'"
    )
    return [QualifiedName(*row) for row in await cur.fetchall() if not row[0].startswith("pg_")]


async def _column_names(conn: psycopg.AsyncConnection, schema: str, table: str) -> list[str]:
    cur = await conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attnum > 0 AND NOT a.attisdropped",
        (schema, table),
    )
    return [name for (name,) in await cur.fetchall()]


async def check(conn: psycopg.AsyncConnection, config: PostgresSourceConfig) -> list[str]:
    """Every problem that would stop capture, each saying what to change."""
    problems: list[str] = []
    if config.mode == "cdc":
        level = (await (await conn.execute("SHOW wal_level")).fetchone() or ("?",))[0]
        if level != "logical":
            problems.append(
                f"wal_level is '{level}'; set wal_level = logical in postgresql.conf and restart"
            )
        row = await (
            await conn.execute(
                "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user"
            )
        ).fetchone()
        if not (row and row[0]):
            problems.append(
                "the user lacks the REPLICATION attribute; run ALTER ROLE <user> REPLICATION"
            )
        if config.publication is not None:
            tables = [canonical(t) for t in config.tables]
            problems.extend(await pubcheck.problems(conn, config.publication, tables))
    for written in config.tables:
        parsed = QualifiedName.parse(written)
        table = parsed.sql
        row = await (
            await conn.execute(
                "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
                "AND i.indisprimary), has_table_privilege(c.oid, 'SELECT'), c.relkind, "
                "c.relpersistence FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (parsed.schema, parsed.name),
            )
        ).fetchone()
        if row is None:
            hint = did_you_mean(written, await catalog_tables(conn))
            problems.append(f"tables: '{written}' does not exist{hint}")
            continue
        identity, has_pk, can_select, kind, persistence = row
        if config.mode == "cdc" and (
            unstreamable := _unstreamable(written, table, kind, persistence)
        ):
            problems.append(unstreamable)
            continue
        taken = reserved(await _column_names(conn, parsed.schema, parsed.name))
        if taken:
            problems.append(f"tables: {reserved_message(repr(written), taken)}")
        if not can_select:
            problems.append(
                f"tables: no SELECT on '{written}'; run GRANT SELECT ON {table} TO <user>"
            )
        if config.mode == "cdc" and identity == "n":
            fix = "DEFAULT" if has_pk else "FULL"
            problems.append(
                f"tables: '{written}' has REPLICA IDENTITY NOTHING: once published, the source "
                f"refuses its UPDATEs and DELETEs (the application writing it would fail); run "
                f"ALTER TABLE {table} REPLICA IDENTITY {fix}"
            )
        elif config.mode == "cdc" and not has_pk and identity not in ("f", "i"):
            problems.append(
                f"tables: '{written}' has no primary key and no REPLICA IDENTITY FULL, so its "
                f"updates and deletes cannot be keyed; add a primary key or run "
                f"ALTER TABLE {table} REPLICA IDENTITY FULL"
            )
    return problems


#: ``pg_class.relkind`` of what is not a table, as Postgres names it
_NOT_TABLES = {
    "v": "a view",
    "m": "a materialized view",
    "S": "a sequence",
    "f": "a foreign table",
    "c": "a composite type",
    "i": "an index",
    "I": "an index",
}


def _unstreamable(written: str, table: str, kind: str, persistence: str) -> str | None:
    """Why the stream can never carry changes of ``written`` (None: it can). Logical
    replication publishes only ordinary and partitioned tables written to the WAL; the
    replica identity advice below would be wrong for anything else."""
    if kind in _NOT_TABLES:
        return (
            f"tables: '{written}' is {_NOT_TABLES[kind]}, which logical replication cannot "
            "publish; list the tables it reads from instead"
        )
    if persistence == "u":
        return (
            f"tables: '{written}' is UNLOGGED: its changes are not written to the WAL, so no "
            f"stream carries them; run ALTER TABLE {table} SET LOGGED"
        )
    if persistence == "t":
        return f"tables: '{written}' is a temporary table, which only its own session sees"
    return None


async def keyless_tables(conn: psycopg.AsyncConnection, tables: list[str]) -> list[str]:
    """The configured tables with no key (:func:`table_keys` gives them ``()``)."""
    keys = await table_keys(conn, tables)
    return [t for t in tables if not keys.get(canonical(t), ())]


async def table_keys(
    conn: psycopg.AsyncConnection, tables: list[str]
) -> dict[str, tuple[str, ...]]:
    """The key of each table (canonical name, see :mod:`syncengine.names`), in key order:
    the replica identity index's columns under REPLICA IDENTITY USING INDEX (the old key
    pgoutput sends is that index's), else the primary key's. ``()`` marks a keyless table (no
    primary key; REPLICA IDENTITY FULL or insert-only): its rows are matched by their whole old
    image (docs/postgres-source.md). Backfill and stream both take the key from here, so they
    agree on it."""
    keys: dict[str, tuple[str, ...]] = {}
    for table in tables:
        parsed = QualifiedName.parse(table)
        cur = await conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            "WHERE n.nspname = %s AND c.relname = %s AND CASE c.relreplident "
            "WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END "
            "ORDER BY k.ord",
            (parsed.schema, parsed.name),
        )
        keys[parsed.sql] = tuple(r[0] for r in await cur.fetchall())
    return keys


async def ensure_publication(
    conn: psycopg.AsyncConnection,
    publication: str,
    tables: list[str],
    publish: str | None = None,
    exact: bool = False,
) -> None:
    """Create the publication, or add configured tables it lacks. ``publish``: the kinds of
    change it publishes (``'delete'``; default: every kind). ``exact``: the engine owns it,
    so tables no longer configured leave it too (a table removed from ``tables:``)."""
    cur = await conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
        (publication,),
    )
    present = {QualifiedName(*r).sql for r in await cur.fetchall()}
    exists = await (
        await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    ).fetchone()
    listed = sql.SQL(", ").join(QualifiedName.parse(t).identifier() for t in tables)
    if not exists:
        kinds = sql.SQL("publish = {}, ").format(sql.Literal(publish)) if publish else sql.SQL("")
        await conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH ({}publish_via_partition_root = true)"
            ).format(sql.Identifier(publication), listed, kinds)
        )
        log.info("created publication %s", publication)
        return
    wanted = {canonical(t) for t in tables}
    extra = sorted(present - wanted) if exact else []
    if extra:
        await conn.execute(
            sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
                sql.Identifier(publication),
                sql.SQL(", ").join(QualifiedName.parse(t).identifier() for t in extra),
            )
        )
        log.info("publication %s: no longer publishes %s", publication, ", ".join(extra))
    missing = [t for t in tables if canonical(t) not in present]
    if missing:
        await conn.execute(
            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                sql.Identifier(publication),
                sql.SQL(", ").join(QualifiedName.parse(t).identifier() for t in missing),
            )
        )


async def slot_exists(conn: psycopg.AsyncConnection, slot: str) -> bool:
    """Whether this database has the slot (slot names are cluster-wide: another database's
    slot of the same name is an error, not a slot to use)."""
    row = await (
        await conn.execute(
            "SELECT database, database = current_database() FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
    ).fetchone()
    if row is None:
        return False
    if not row[1]:
        raise FatalError(
            f"replication slot {slot} belongs to database {row[0]}",
            hint="slot names are per cluster; set source.slot to a different name",
        )
    return True


async def usable_slot(conn: psycopg.AsyncConnection, slot: str) -> bool:
    """Whether the slot exists and can still be read. A slot the server invalidated
    (``wal_status = 'lost'``: it held more WAL than ``max_slot_wal_keep_size`` allows) can
    never be read again, and Postgres says to drop it: it is dropped here, for a backfill
    that starts without a checkpoint (nothing of the old slot is needed) to make a new one."""
    if not await slot_exists(conn, slot):
        return False
    if await slot_status(conn, slot) != LOST:
        return True
    log.warning("replication slot %s was invalidated by the server: dropped, made anew", slot)
    await conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return False


#: ``pg_replication_slots.wal_status`` of an invalidated slot
LOST = "lost"


async def slot_status(conn: psycopg.AsyncConnection, slot: str) -> str | None:
    """The slot's ``wal_status`` (None: no such slot)."""
    row = await (
        await conn.execute(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
    ).fetchone()
    return None if row is None else row[0]


async def create_slot(
    repl: psycopg.AsyncConnection, slot: str, export: bool, temporary: bool = False
) -> tuple[int, str | None]:
    """CREATE_REPLICATION_SLOT on a ``replication=database`` connection.

    With ``export`` the returned snapshot name stays importable only while ``repl`` stays open
    and runs nothing else. A ``temporary`` slot is dropped when ``repl`` closes (used only for
    its exported snapshot and consistent point). Returns (consistent point LSN, snapshot name).
    """
    mode = sql.SQL("EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT")
    kind = sql.SQL(" TEMPORARY" if temporary else "")
    cur = repl.cursor()
    await cur.execute(
        sql.SQL("CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput {}").format(
            sql.Identifier(slot), kind, mode
        )
    )
    row = await cur.fetchone()
    assert row is not None
    log.info("created replication slot %s at %s", slot, row[1])
    return parse_lsn(row[1]), row[2]


async def wait_slot_idle(conn: psycopg.AsyncConnection, slot: str, timeout: float = 10.0) -> None:
    """Wait until no walsender holds ``slot`` (a just-closed stream's may take a moment to
    exit); past ``timeout`` the next START_REPLICATION reports the slot in use (retriable)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while loop.time() < give_up:
        row = await (
            await conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            )
        ).fetchone()
        if row is None or not row[0]:
            return
        await asyncio.sleep(0.02)


async def drop_slot(dsn: str, slot: str, query_timeout: float = 60.0) -> bool:
    """Drop a pipeline's slot (explicit command only). False when there was none."""
    async with await deadline.connect(dsn, query_timeout, autocommit=True) as conn:
        if not await slot_exists(conn, slot):
            return False
        await conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        return True


async def advance_slot(conn: psycopg.AsyncConnection, slot: str, lsn: int) -> None:
    """Confirm ``lsn`` on an inactive slot (``pg_replication_slot_advance``), if it is ahead.

    Best effort: a slot in use by a stream, or gone, is left alone (the stream confirms by
    itself; a missing slot is reported when streaming starts).
    """
    target = format_lsn(lsn)
    try:
        for _ in range(20):  # a just-closed stream's walsender may take a moment to exit
            row = await (
                await conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s "
                    "AND confirmed_flush_lsn < %s::pg_lsn",
                    (slot, target),
                )
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                await conn.execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, target)
                )
                return
            await asyncio.sleep(0.05)
    except psycopg.Error as exc:
        log.debug("could not advance slot %s: %s", slot, exc)


#: ``SHOW``'s units for a time setting, in seconds
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


async def sender_timeout(repl: psycopg.AsyncConnection) -> float:
    """The walsender's ``wal_sender_timeout`` in seconds (0: none), asked on the replication
    connection before ``START_REPLICATION``: a database or role may set it lower than the
    server's 60 s default, and the stream must report more often than that."""
    row = await (await repl.cursor().execute("SHOW wal_sender_timeout")).fetchone()
    return setting_seconds(str(row[0]) if row else "0")


def setting_seconds(shown: str) -> float:
    """A time setting as ``SHOW`` prints it (``1min``, ``500ms``, ``0``) in seconds; a bare
    number is in milliseconds, the unit of ``wal_sender_timeout``."""
    text = shown.strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number or 0) * _TIME_UNITS.get(text[len(number) :], 1e-3)


async def emit_heartbeat(conn: psycopg.AsyncConnection, content: str = "") -> int:
    """A transactional logical message: its commit gives an idle slot a boundary to confirm."""
    return await emit_message(conn, HEARTBEAT_PREFIX, content)


async def emit_message(conn: psycopg.AsyncConnection, prefix: str, content: str) -> int:
    """``pg_logical_emit_message(true, …)``; returns the message's LSN."""
    row = await (
        await conn.execute("SELECT pg_logical_emit_message(true, %s, %s)::text", (prefix, content))
    ).fetchone()
    assert row is not None
    return parse_lsn(row[0])


async def confirmed_lsn(conn: psycopg.AsyncConnection, slot: str) -> int | None:
    """The slot's confirmed position (None: no such slot)."""
    cur = await conn.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    row = await cur.fetchone()
    return parse_lsn(row[0]) if row is not None and row[0] is not None else None


async def current_lsn(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute("SELECT pg_current_wal_lsn()::text")).fetchone()
    assert row is not None
    return parse_lsn(row[0])


async def slot_lag(
    conn: psycopg.AsyncConnection,
    slot: str,
    acknowledged: str | None,
    max_retained_mb: int,
    last_commit_age: float | None = None,
) -> SourceLag:
    """Retained WAL (restart_lsn → now) and unacknowledged bytes; past the threshold,
    ``details["warning"]`` says so (see :class:`RetainedWalWarnings` for logging it)."""
    row = await (
        await conn.execute(
            "SELECT pg_current_wal_lsn()::text, restart_lsn::text, confirmed_flush_lsn::text, "
            "active, wal_status FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
    ).fetchone()
    if row is None:
        details: dict[str, object] = {"slot": slot, "missing": True}
        if acknowledged:
            details["warning"] = (
                f"slot {slot} is gone: the changes after the checkpoint are lost; the pipeline "
                "must copy its tables again (source.on_history_lost)"
            )
        return SourceLag(acknowledged, details=details)
    now, restart, confirmed, active, wal_status = row
    current = parse_lsn(now)
    retained = current - parse_lsn(restart) if restart else None
    done = pos_to_lsn(acknowledged.split(".")[0]) if acknowledged else None
    if done is None and confirmed:
        done = parse_lsn(confirmed)
    details = {
        "slot": slot,
        "active": active,
        "wal_status": wal_status,
        "confirmed_flush": lsn_to_pos(parse_lsn(confirmed)) if confirmed else None,
    }
    if wal_status == LOST:
        details["warning"] = (
            f"slot {slot} was invalidated by the server (max_slot_wal_keep_size): the changes "
            "after the checkpoint are lost; the pipeline must copy its tables again "
            "(source.on_history_lost)"
        )
    elif retained is not None and retained > max_retained_mb * 1024 * 1024:
        if not active:
            why = "nothing is reading it: is the pipeline running?"
        elif last_commit_age:
            why = f"the pipeline reading it is {last_commit_age:.0f} s behind the source"
        else:
            why = "the pipeline is reading it"
        details["warning"] = (
            f"slot {slot} retains {retained // (1024 * 1024)} MB of WAL "
            f"(max_retained_wal_mb: {max_retained_mb}); {why}"
        )
    return SourceLag(
        position=lsn_to_pos(current),
        lag_bytes=max(current - done, 0) if done is not None else None,
        lag_seconds=last_commit_age,
        retained_wal_bytes=retained,
        details=details,
    )


@dataclass
class RetainedWalWarnings:
    """Logs a slot's retained-WAL warning when it appears, then again only when the retained WAL
    has doubled or ``every`` seconds have passed: the daemon probes lag every few seconds, and
    a long catch-up would otherwise print the same line hundreds of times."""

    every: float = 600.0
    _logged_at: float | None = None
    _logged_bytes: int = 0

    def note(self, lag: SourceLag) -> None:
        warning = lag.details.get("warning")
        if not warning:
            self._logged_at, self._logged_bytes = None, 0
            return
        now, retained = time.monotonic(), lag.retained_wal_bytes or 0
        due = self._logged_at is None or now - self._logged_at >= self.every
        if due or retained >= 2 * self._logged_bytes:
            log.warning("%s", warning)
            self._logged_at, self._logged_bytes = now, retained
