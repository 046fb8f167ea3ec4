"""Two-way under load: one writer per side on hot keys (updates, inserts, deletes) for a
minute while the daemon is SIGKILLed five times (issue 20's contract); once the writers stop,
both sides are identical and the engine's applied-change counters stop growing (no
ping-pong)."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_two_way import SNAPSHOT, make_cli

HOT = 40
WRITE_SECONDS = 60
KILLS = 5


#: the updates a writer makes: both fields, or (``merge``) half of the time only its own one,
#: so that concurrent edits of one row are merged field by field as well as settled by time
UPDATES = {
    "both": "UPDATE items SET name = %(name)s, qty = qty + 1 WHERE id = %(id)s",
    "a": "UPDATE items SET name = %(name)s WHERE id = %(id)s",
    "b": "UPDATE items SET qty = qty + 1 WHERE id = %(id)s",
}


def writer(dsn: str, side: str, stop: threading.Event, seed: int, split: bool = False) -> int:
    """Random single-row transactions on hot keys until ``stop``; returns how many."""
    rng = random.Random(seed)
    done = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            key = rng.randint(1, HOT)
            roll = rng.random()
            if roll < 0.7:
                update = UPDATES[side if split and rng.random() < 0.5 else "both"]
                conn.execute(update, {"name": f"{side}{done}", "id": key})
            elif roll < 0.85:
                conn.execute(
                    "INSERT INTO items VALUES (%s, %s, 0, now()) ON CONFLICT (id) DO NOTHING",
                    (key, f"{side}-new{done}"),
                )
            else:
                conn.execute("DELETE FROM items WHERE id = %s", (key,))
            done += 1
            time.sleep(rng.uniform(0.001, 0.02))
    return done


def start_writers(
    sides: list[tuple[str, str]], stop: threading.Event, split: bool = False
) -> tuple[list[threading.Thread], list[int]]:
    """One :func:`writer` thread per (dsn, side), started; each adds its count when done."""
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda d=d, s=s, n=n: counts.append(writer(d, s, stop, n, split)))
        for n, (d, s) in enumerate(sides)
    ]
    for thread in threads:
        thread.start()
    return threads, counts


HISTORY = (
    "CREATE TABLE items_history (at timestamptz DEFAULT clock_timestamp(), txid bigint "
    "DEFAULT txid_current(), engine bool DEFAULT pg_replication_origin_session_is_setup(), "
    "op text, id bigint, name text, qty int)",
    "CREATE FUNCTION items_history() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'DELETE' THEN INSERT INTO items_history (op, id) VALUES ('d', OLD.id); "
    "ELSE INSERT INTO items_history (op, id, name, qty) VALUES (lower(left(TG_OP, 1)), NEW.id, "
    "NEW.name, NEW.qty); END IF; RETURN NULL; END $$",
    "CREATE TRIGGER items_history AFTER INSERT OR UPDATE OR DELETE ON items "
    "FOR EACH ROW EXECUTE FUNCTION items_history()",
)


def history(dsn: str, keys: set[int]) -> str:
    """Every write to ``keys`` on one side, in commit-ish order: when it was made and
    committed, and the replication origin of its transaction (none for a person); then the
    versions the directions writing into this side recorded for them: what to read when the
    sides differ."""
    found = rows(
        dsn,
        "SELECT to_char(h.at, 'HH24:MI:SS.US'), "
        "to_char(pg_xact_commit_timestamp(h.xmin), 'HH24:MI:SS.US'), h.txid, o.roname, h.op, "
        "h.id, h.name, h.qty FROM items_history h LEFT JOIN pg_replication_origin o "
        "ON o.roident = (pg_xact_commit_timestamp_origin(h.xmin)).roident "
        f"WHERE h.id = ANY(ARRAY{sorted(keys)}::bigint[]) ORDER BY h.at",
    )
    recorded = rows(
        dsn,
        "SELECT pipeline, row_key, to_char(ts, 'HH24:MI:SS.US'), side, deleted "
        "FROM _syncengine.versions ORDER BY row_key, pipeline",
    )
    wanted = {f'{{"id":{k}}}' for k in keys}
    versions = [r for r in recorded if r[1] in wanted]
    return "\n".join(
        ["  " + " ".join(str(v) for v in row) for row in found]
        + ["  recorded: " + " ".join(str(v) for v in row) for row in versions]
    )


def assert_same(source: str, target: str) -> None:
    """Both sides hold the same rows; if not, the diverging keys with their history."""
    a, b = set(rows(source, SNAPSHOT)), set(rows(target, SNAPSHOT))
    if a != b:
        keys = {r[0] for r in a ^ b}
        raise AssertionError(
            f"only at the source {a - b}, only at the target {b - a}\n"
            f"source history:\n{history(source, keys)}\n"
            f"target history:\n{history(target, keys)}"
        )


def applied_total(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    family = families.get("syncengine_changes_applied")
    if family is None:
        return 0.0
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


def quiet(port: int, seconds: float) -> bool:
    """No change applied for ``seconds``."""
    before = applied_total(port)
    time.sleep(seconds)
    return applied_total(port) == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(600)  # a minute of writes, five kills, then settling
@pytest.mark.parametrize(
    "conflicts",
    [
        "{prefer: source}",
        "{strategy: timestamp}",
        "{strategy: merge}",
    ],
)
def test_two_writers_and_kills_converge_without_ping_pong(
    tmp_path, pg_dsn, pg_target_dsn, conflicts
):
    table = "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, stamp timestamptz)"
    execute(
        pg_dsn, table, f"INSERT INTO items SELECT i, 'n', 0, now() FROM generate_series(1, {HOT}) i"
    )
    execute(pg_target_dsn, table)
    for dsn in (pg_dsn, pg_target_dsn):
        execute(dsn, *HISTORY)
    cli = make_cli(tmp_path, pg_dsn, pg_target_dsn, conflicts)
    cli.run("sync", "--once")  # the forward backfill, then both stream
    split = "merge" in conflicts
    writers = [
        lambda stop, d=d, s=s, n=n: writer(d, s, stop, n, split)
        for n, (d, s) in enumerate([(pg_dsn, "a"), (pg_target_dsn, "b")])
    ]
    daemon, port, counts = hammer(cli, writers)
    try:
        assert sum(counts) > 200, counts
        same = lambda: rows(pg_dsn, SNAPSHOT) == rows(pg_target_dsn, SNAPSHOT)  # noqa: E731
        settle(port, same, lambda: assert_same(pg_dsn, pg_target_dsn))
    finally:
        assert cli.stop(daemon) == 0


def hammer(
    cli: CLI, writers: list[Callable[[threading.Event], int]]
) -> tuple[subprocess.Popen[str], int, list[int]]:
    """The daemon running (with metrics) while ``writers`` write, SIGKILLed and restarted
    ``KILLS`` times; returns the last daemon, its metrics port and each writer's count."""
    port = free_port()
    daemon = cli.start("run", "--metrics-port", str(port))
    stop = threading.Event()
    counts: list[int] = []
    threads = [threading.Thread(target=lambda w=w: counts.append(w(stop))) for w in writers]
    for thread in threads:
        thread.start()
    try:
        for _ in range(KILLS):
            time.sleep(WRITE_SECONDS / (KILLS + 1))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(30)
            daemon = cli.start("run", "--metrics-port", str(port))
        time.sleep(WRITE_SECONDS / (KILLS + 1))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return daemon, port, counts


def settle(port: int, same: Callable[[], bool], explain: Callable[[], None]) -> None:
    """Both sides become ``same`` and the applied-change counters stop growing (no ping-pong);
    ``explain`` raises with the differences when they do not."""
    try:
        wait_for(same, timeout=60)
    except AssertionError:
        explain()
        raise
    # quiet: the counters settle within seconds and then stay put (nothing echoes). The
    # sides can be equal for a moment before the last correction (two-way timestamp) is
    # written, so first wait for two seconds without a write, then watch five more.
    wait_for(lambda: applied_total(port) > 0, timeout=30)
    wait_for(lambda: quiet(port, 2), timeout=30)
    settled = applied_total(port)
    time.sleep(5)
    assert applied_total(port) == settled
    if not same():
        explain()
