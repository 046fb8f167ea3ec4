"""The shared Postgres state store as many processes share it, on a real PostgreSQL server
(a fresh database per test); what each concern answers is in ``test_state_postgres_store.py``.

* Format: a store written by a newer syncengine is refused; reopening a store is idempotent and
  an older store is upgraded in place; ``open_state`` picks this store for a Postgres URL.
* Concurrency: processes writing at once draw unique, dense ids, and lose nothing.
* Durability: a writer killed by SIGKILL leaves its last committed checkpoint with its shadow
  rows.
* Locks: a pipeline's advisory lock refuses a second holder and names the first, says who holds
  it, is independent per pipeline, and frees itself when its holder dies.
* Secrets: a failed connection never shows the password.
* Bad values: a NUL in text (which Postgres cannot store) is kept escaped, not retried as if
  the server were away; a malformed query is a fatal error, not a retriable one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from syncengine.errors import FatalError, LockHeld, RetriableError, SyncEngineError
from syncengine.state import (
    DeadLetter,
    open_state,
)
from syncengine.state.locks import Holder
from syncengine.state.postgres import STATE_SCHEMA, PostgresStateStore
from syncengine.state.postgres.locks import PostgresLock
from syncengine.state.schema import FORMAT_VERSION, MIGRATIONS
from tests.unit.test_state_store import WRITER


def test_open_state_picks_the_shared_store_for_a_postgres_url(pg_dsn: str) -> None:
    url = _as_url(pg_dsn)
    for spec in (url, url.replace("postgresql://", "postgres://", 1)):
        store = open_state(spec)
        assert isinstance(store, PostgresStateStore)
        store.put_checkpoint("p", spec.split(":", 1)[0], "1")
        store.close()
    seen = PostgresStateStore(pg_dsn).list_checkpoints("p")
    assert [c.stream for c in seen] == ["postgres", "postgresql"]


# --- format version -------------------------------------------------------------------------


def _format_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE name = 'format_version'").format(
                sql.Identifier(STATE_SCHEMA, "meta")
            )
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_newer_format_is_refused_and_reopening_is_idempotent(pg_dsn: str) -> None:
    store = PostgresStateStore(pg_dsn)
    store.put_checkpoint("p", "slot", "00000000/0000000A")
    store.close()
    for _ in range(2):
        reopened = PostgresStateStore(pg_dsn)
        assert reopened.get_checkpoint("p", "slot").position == "00000000/0000000A"
        reopened.close()
    assert _format_version(pg_dsn) == str(FORMAT_VERSION)

    newer = str(FORMAT_VERSION + 1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET value = %s WHERE name = 'format_version'").format(
                sql.Identifier(STATE_SCHEMA, "meta")
            ),
            (newer,),
        )
    with pytest.raises(FatalError, match="newer") as refused:
        PostgresStateStore(pg_dsn)
    assert not isinstance(refused.value, RetriableError)
    assert _format_version(pg_dsn) == newer  # refused, not overwritten


def test_older_store_is_upgraded_in_place(pg_dsn: str) -> None:
    PostgresStateStore(pg_dsn).close()
    added = [(table, column) for step in MIGRATIONS.values() for table, column, _ in step]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for table, column in added:  # as a version 1 store had them: without
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
                    sql.Identifier(STATE_SCHEMA, table), sql.Identifier(column)
                )
            )
        conn.execute(
            sql.SQL("UPDATE {} SET value = '1' WHERE name = 'format_version'").format(
                sql.Identifier(STATE_SCHEMA, "meta")
            )
        )
    store = PostgresStateStore(pg_dsn)
    assert _format_version(pg_dsn) == str(FORMAT_VERSION)
    with psycopg.connect(pg_dsn) as conn:
        columns = {
            (t, c): (kind, collation)
            for t, c, kind, collation in conn.execute(
                "SELECT table_name, column_name, data_type, collation_name "
                "FROM information_schema.columns WHERE table_schema = %s",
                (STATE_SCHEMA,),
            )
        }
    # positions compare bytewise whatever the server's locale: every text column is "C"
    assert {collation for kind, collation in columns.values() if kind == "text"} == {"C"}
    assert columns[("shadow", "position")] == ("text", "C")
    assert columns[("dead_letters", "superseded")] == ("text", "C")
    assert columns[("table_requests", "target_empty")] == ("bigint", None)
    # and the upgraded store works with them
    with store.transaction() as db:
        store.write_shadow(db, "p", "t", [("[1]", "", None, "0/A"), ("[2]", "", None, "0/a")])
        store.purge_tombstones(db, "p", before="0/B")
    assert store.get_shadow("p", "t", ["[1]", "[2]"]) == {"[2]": ("", None, "0/a")}
    request = store.request_table("p", "t", "resnapshot", None)
    store.update_table_request(request, "running", target_empty=False)
    assert store.table_requests("p")[0].target_empty is False
    store.close()


# --- many processes -------------------------------------------------------------------------

CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    from syncengine.state import Conflict, DeadLetter
    from syncengine.state.postgres import PostgresStateStore

    url, worker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = PostgresStateStore(url)
    print("ready", flush=True)
    sys.stdin.readline()  # every worker starts at once
    request = store.request_table("p", "public.t", "resnapshot", None)
    for i in range(rounds):
        letters = [DeadLetter("p", "t", "apply", f"{worker}:{i}:{n}", "{}") for n in range(2)]
        assert store.add_dead_letters(letters) == 2
        with store.transaction() as db:
            key = f"[{worker},{i}]"
            parked = Conflict(None, "p", "t", key, None, None, "{}", None)
            conflict = store.park_conflict(db, parked)
            store.hold_changes(db, "p", "t", [(conflict, key, key)])
    print(request, flush=True)
    """
)


def test_concurrent_writers_draw_unique_dense_ids(pg_dsn: str) -> None:
    workers, rounds = 4, 40
    store = PostgresStateStore(pg_dsn)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, pg_dsn, str(w), str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.split() == ["1"], (out, err)  # one request for all of them

    letters = store.list_dead_letters("p")
    assert sorted(d.id for d in letters) == list(range(1, 2 * workers * rounds + 1))
    assert sorted(d.reason for d in letters) == sorted(
        f"{w}:{i}:{n}" for w in range(workers) for i in range(rounds) for n in range(2)
    )
    conflicts = store.list_conflicts("p")
    assert sorted(c.id for c in conflicts) == list(range(1, workers * rounds + 1))
    assert len({c.key for c in conflicts}) == workers * rounds
    for conflict in conflicts:  # each park committed with its own held change
        assert store.held_changes(conflict.id) == [conflict.key]
    held = [r[0] for r in store.db.execute("SELECT id FROM held_changes ORDER BY id")]
    assert held == list(range(1, workers * rounds + 1))
    assert store.counts("p") == {
        "pending_conflicts": workers * rounds,
        "dead_letters": 2 * workers * rounds,
    }
    assert [r.id for r in store.table_requests("p")] == [1]


#: commits a checkpoint and 200 shadow rows per transaction, printing each commit's number
KILLED_WRITER = WRITER


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6])
def test_killed_writer_leaves_last_committed_checkpoint(
    pg_dsn: str, tmp_path: Path, delay: float
) -> None:
    with open(tmp_path / "stderr", "w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, pg_dsn],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is committing now
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
    committed = [int(line) for line in (first + rest).split()]
    assert committed, (tmp_path / "stderr").read_text()

    store = PostgresStateStore(pg_dsn)  # opens: the dead writer's transaction is rolled back
    checkpoint = store.get_checkpoint("p", "slot")
    assert checkpoint is not None
    # the last reported commit is durable; at most one more commit may have landed unreported
    last = checkpoint.details["i"]
    assert committed[-1] <= last <= committed[-1] + 1
    assert checkpoint.position == f"{last:016X}"
    shadow = store.get_shadow("p", "t", [str(k) for k in range(200)])
    assert len(shadow) == 200
    assert set(shadow.values()) == {(f"h{last}", "{}", f"{last:016X}")}
    store.put_checkpoint("p", "slot", "next")  # and it takes writes again
    assert store.get_checkpoint("p", "slot").position == "next"


# --- pipeline locks -----------------------------------------------------------------------

LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from syncengine.state.postgres import PostgresStateStore

    lock = PostgresStateStore(sys.argv[1]).lock("p", "run").acquire()
    print("held", flush=True)
    sys.stdin.read()  # until killed
    """
)


def _acquire_within(lock: PostgresLock, seconds: float) -> PostgresLock:
    """Take ``lock`` once the server has noticed its holder is gone."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return lock.acquire()
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_pipeline_lock_refuses_names_holder_and_frees_when_holder_dies(pg_dsn: str) -> None:
    store = PostgresStateStore(pg_dsn)
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, pg_dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"

        with pytest.raises(LockHeld) as refused:
            store.lock("p", "backfill").acquire()
        assert f"'run' (pid {proc.pid})" in str(refused.value)
        # on this host: no host named, the pid can be signalled
        assert store.lock("p", "backfill").peek() == Holder(proc.pid, "run", None)
        assert store.lock("p", "status").holder() == Holder(proc.pid, "run", None)

        # "q" is a lock of its own (its key is positive, "p"'s negative: both are found)
        with store.lock("q", "sync") as other:
            assert other.peek() == Holder(os.getpid(), "sync", None)
            with pytest.raises(LockHeld, match=f"'sync' \\(pid {os.getpid()}\\)"):
                store.lock("q", "backfill").acquire()
            assert store.lock("p", "status").holder() == Holder(proc.pid, "run", None)
        assert store.lock("q", "status").peek() is None
        assert store.lock("q", "status").holder() is None

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lock = _acquire_within(store.lock("p", "backfill"), seconds=10)
        assert lock.holder() == Holder(os.getpid(), "backfill", None)
        lock.release()
        assert store.lock("p", "status").peek() is None
    finally:
        proc.kill()
        proc.wait()


def test_pipeline_lock_held_on_another_host_names_it(pg_dsn: str) -> None:
    """A holder on another machine (as its connection names itself) is reported with its host."""
    store = PostgresStateStore(pg_dsn)
    name = "syncengine 4242 worker-7.example run"
    with psycopg.connect(pg_dsn, autocommit=True, application_name=name) as remote:
        remote.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", ("syncengine.pipeline:p",)
        )
        assert store.lock("p", "status").peek() == Holder(4242, "run", "worker-7.example")
        with pytest.raises(LockHeld, match=r"'run' \(pid 4242 on worker-7.example\)"):
            store.lock("p", "backfill").acquire()
    _acquire_within(store.lock("p", "backfill"), seconds=10).release()


# --- secrets --------------------------------------------------------------------------------


def _as_url(pg_dsn: str, user: str | None = None, password: str | None = None) -> str:
    """``pg_dsn`` (a URL or ``key=value`` conninfo) as a ``postgresql://`` URL."""
    info = conninfo_to_dict(pg_dsn)
    userinfo = user or str(info.get("user", "postgres"))
    if password is not None:
        userinfo += f":{password}"
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql://{userinfo}@{host}:{port}/{info['dbname']}"


def _shown(exc: BaseException) -> str:
    """Everything a person could see of an error: message, hint, repr and traceback."""
    return "\n".join(
        [str(exc), repr(exc), str(getattr(exc, "hint", "")), *traceback.format_exception(exc)]
    )


def test_failed_connection_does_not_show_the_password(pg_dsn: str) -> None:
    password = "hunter2secret"
    url = _as_url(pg_dsn, "nobody", password)
    with pytest.raises(SyncEngineError) as store_error:
        PostgresStateStore(url)
    with pytest.raises(SyncEngineError) as lock_error:
        PostgresLock(url, "p", "run").acquire()
    for error in (store_error.value, lock_error.value):
        assert "nobody" in str(error)  # it says what failed
        assert password not in _shown(error)


# --- a password libpq quotes back, values Postgres cannot hold, a bad query -----------------


def test_malformed_password_is_not_echoed(pg_dsn: str) -> None:
    password = "hunter2%ZZsecret"  # a '%' not percent-encoded: libpq quotes the token back
    with pytest.raises(SyncEngineError) as error:
        PostgresStateStore(_as_url(pg_dsn, "nobody", password))
    assert password not in _shown(error.value)


def test_a_value_postgres_cannot_store_is_kept_escaped_and_a_bad_query_is_fatal(
    pg_dsn: str,
) -> None:
    store = PostgresStateStore(pg_dsn)
    store.add_dead_letters([DeadLetter("p", "t", "apply", "a NUL \x00 in it", "{}")])
    (letter,) = store.list_dead_letters("p")
    assert letter.reason == "a NUL \\u0000 in it"
    with pytest.raises(SyncEngineError) as error:
        store.db.execute("SELECT ?", ())  # one placeholder, no parameter: a bug, not an outage
    assert not error.value.retriable, f"{type(error.value).__name__}: {error.value}"
