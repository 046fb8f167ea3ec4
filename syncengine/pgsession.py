"""The session settings every engine connection to Postgres pins: text forms, limits, policies.

A database's owner sets its session defaults (``ALTER DATABASE … SET DateStyle = 'SQL, DMY'``,
``bytea_output = 'escape'``, ``extra_float_digits = 0``, a local ``TimeZone``) for their own
applications; those reach every connection the engine opens. psycopg cannot load a
``timestamptz`` printed in the ``SQL`` style (the target's first statement failed with a
traceback), a float printed with 15 digits is not the float the source held (the shadow's hash
of a value read back never matched: a conflict nobody made), and escaped ``bytea`` is not the
hex the text readers parse. A ``statement_timeout`` or ``idle_in_transaction_session_timeout``
meant for the database's applications stopped a backfill whose chunk took longer (the engine
bounds its own waits client-side, as ``pg_dump`` turns both off), and row-level security
hid rows from a snapshot (``row_security`` off makes it an error, as ``pg_dump`` does). So
each connection pins:

* the source's (ordinary and replication) as libpq ``options``, after the DSN's own
  (:func:`startup_options`; a later ``-c`` of the same setting wins, the user's others stay);
* the target's and the state store's with one ``set_config`` statement once connected
  (:func:`pin`): a connection pooler may refuse startup ``options``, never a statement;
* settings only newer servers know (:data:`LATER`) once connected, on every connection.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

#: setting → the value the engine's text readers and writers assume
SETTINGS: dict[str, str] = {
    # every reader decodes UTF-8 and every writer sends it; a LATIN1 source database's
    # pgoutput and COPY text came in its own encoding otherwise (the stream stopped at 'é'),
    # and the server converts a target's input to its encoding (or refuses it, row by row)
    "client_encoding": "UTF8",
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    # the engine bounds its own statements (``query_timeout``, ``batch.timeout``); a
    # database's limit meant for its applications would fail a chunk's COPY, a primary key
    # built after a backfill, or a snapshot's reader waiting on its target (as ``pg_dump``)
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    # a table's row-level security policies would hide rows from the snapshot (a backfill of
    # a tenant's rows only, said to be complete) while the stream sends every row's changes,
    # and hide target rows from the upsert: off, a read or write they would change fails
    # instead ("query would be affected by row-level security policy"), as ``pg_dump`` does
    "row_security": "off",
}

#: settings a server knows from a version on (``server_version_num``): not startup options,
#: which an older server refuses, but set once connected where the server has them.
#: ``idle_session_timeout`` (14+): the server closes a connection idle that long, and the
#: engine's catalog and side connections idle for as long as the stream is quiet (a
#: database's 1 s stopped the pipeline: "terminating connection due to idle-session timeout")
LATER: dict[str, tuple[str, int]] = {"idle_session_timeout": ("0", 140000)}

#: the settings as libpq ``options`` (``-c name=value``; spaces escaped as libpq wants)
PINNED_OPTIONS = " ".join(f"-c {k}={v.replace(' ', '')}" for k, v in SETTINGS.items())


def startup_options(dsn: str) -> str:
    """libpq ``options`` for ``dsn``: its own (or ``PGOPTIONS``'s) followed by the pinned
    settings, so a user's ``-c search_path=…`` is kept and the pinned ones win."""
    own = conninfo_to_dict(dsn).get("options") or os.environ.get("PGOPTIONS", "")
    return f"{own} {PINNED_OPTIONS}".strip()


def _statement(
    conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any], later_only: bool
) -> tuple[str, list[str]]:
    """One ``SELECT set_config(…), …`` of the settings ``conn``'s server has."""
    version = conn.info.server_version
    wanted = {} if later_only else dict(SETTINGS)
    wanted.update({k: v for k, (v, since) in LATER.items() if version >= since})
    query = "SELECT " + ", ".join("pg_catalog.set_config(%s, %s, false)" for _ in wanted)
    return query, [part for item in wanted.items() for part in item]


async def pin(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set the pinned settings on ``conn`` for its whole session (outside any transaction:
    autocommit, or before the first one)."""
    await conn.execute(*_statement(conn, later_only=False))


async def pin_later(conn: psycopg.AsyncConnection[Any]) -> None:
    """The :data:`LATER` settings on a connection that has the rest as startup options (a
    source's), where its server has them."""
    query, params = _statement(conn, later_only=True)
    if params:
        await conn.execute(query, params)


def pin_sync(conn: psycopg.Connection[Any]) -> None:
    """:func:`pin` for a blocking connection (the state store's)."""
    conn.execute(*_statement(conn, later_only=False))
