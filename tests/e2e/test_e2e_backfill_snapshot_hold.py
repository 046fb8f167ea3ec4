"""How long a decoded Postgres backfill holds the source snapshot, and that it lets go.

A decoded (not passed-through) backfill reads each chunk with a CSV ``COPY`` inside a
transaction that imported the slot's exported snapshot; while the target applies a piece the
worker's ``COPY`` waits (backpressure: the server blocks on its socket, ``ClientWrite``). The
snapshot (``backend_xmin``) is held for the whole backfill in any case: every chunk must be
read in it, and each worker keeps its transaction (and the ``AccessShareLock`` on the tables
it read) until no chunk is left. Pausing the ``COPY`` therefore adds no lock and no older xmin;
it stretches the read to the pace of the target, which is what bounds memory.

This test samples ``pg_stat_activity`` on the source during a daemon's backfill into a Mongo
target (always decoded) and checks the part that matters for the source's vacuum: once the
backfill is done and the daemon streams, no connection of it holds a snapshot any more.
The figures (samples with a paused ``COPY``, how long a snapshot was held against the whole
backfill) are printed for docs/postgres-source.md.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections import Counter

import psycopg
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      hold:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.wide]
          snapshot_chunk_rows: 5000
        target: {type: mongo, uri: "${MONGO_URI}", database: TGT}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
ROWS = 30_000
#: the daemon's source backends: not this test's own, not the walsender
OURS = (
    "SELECT pid, state, wait_event, backend_xmin IS NOT NULL, left(query, 40) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend'"
)


class Sampler(threading.Thread):
    """Every 50 ms: the daemon's source backends (snapshot held? COPY paused?)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.samples: list[tuple[float, list[tuple[object, ...]]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                self.samples.append((time.monotonic(), conn.execute(OURS).fetchall()))
                time.sleep(0.05)


def test_decoded_backfill_releases_the_source_snapshot(tmp_path, pg_dsn, mongo_uri, mongo_db):
    execute(
        pg_dsn,
        "CREATE TABLE wide (id int PRIMARY KEY, a text, b text, n numeric)",
        f"INSERT INTO wide SELECT g, repeat('x', 200), md5(g::text), g / 7.0 "
        f"FROM generate_series(1, {ROWS}) g",
    )
    config = CONFIG.replace("TGT", mongo_db)
    cli = CLI(tmp_path, config, {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri})
    sampler = Sampler(pg_dsn)
    sampler.start()
    started = time.monotonic()
    daemon = cli.start("run")
    try:
        with MongoClient(mongo_uri) as client:
            wide = client[mongo_db]["wide"]
            wait_for(lambda: wide.estimated_document_count() >= ROWS, timeout=240, interval=0.2)
        copied = time.monotonic()
        time.sleep(3)  # streaming now: a leftover snapshot would show here
    finally:
        sampler.done.set()
        sampler.join()
        assert cli.stop(daemon) == 0, cli.daemon_logs()
    during = [rows for at, rows in sampler.samples if at < copied]
    after = [rows for at, rows in sampler.samples if at > copied + 1]
    holding = [at for at, rows in sampler.samples if any(r[3] for r in rows)]
    paused = sum(1 for rows in during if any(r[2] == "ClientWrite" for r in rows))
    copying = sum(1 for rows in during if any(str(r[4]).startswith("COPY") for r in rows))
    assert holding, "sampling saw no snapshot held during the backfill"
    states = Counter((r[1], r[2]) for rows in during for r in rows if str(r[4]).startswith("COPY"))
    print(
        f"\nbackfill {copied - started:.1f} s; snapshot held from {holding[0] - started:.1f} s "
        f"to {holding[-1] - started:.1f} s; samples with a COPY {copying}/{len(during)}, "
        f"of them paused in the COPY (ClientWrite) {paused}; COPY backends by state {dict(states)}"
    )
    leftover = [r for rows in after for r in rows if r[3]]
    assert after and not leftover, leftover[:5]
