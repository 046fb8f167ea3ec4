"""A stream workflow's initial backfill taken over by another worker, per chunk (a shared state
store).

The stream attempt copies its table in chunks before it streams. Its worker is SIGKILLed right
after its first chunk committed (the test's fault point); the next attempt, on the other worker,
finds the chunk progress in the shared state store and the done-marks in the target, and
resumes the snapshot at the chunks not done, reconciled with the stream by watermarks (the
exported snapshot died with the first worker), while writers keep changing the table. The
target ends equal to the source; nothing was copied again from the start.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.harness import execute, machines, rows, wait_for
from tests.e2e.test_e2e_cluster_stream import Writers, stop_workers

pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

KEYS = 40
ROWS = 60_000
CONFIG = """
state: ${SYNCENGINE_STATE}
cluster: {engine: temporal, address: '${TEMPORAL_ADDRESS}', task_queue: backfill-takeover,
          heartbeat: 3s, snapshot_in_flight: 0}
pipelines:
  takeover:
    source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.counters],
             snapshot_chunk_rows: 2000}
    target: {type: postgres, dsn: "${TGT_DSN}"}
    batch: {max_rows: 500, max_wait: 100ms}
    backfill: {parallel: 1}
"""
QUERY = "SELECT id, n FROM counters ORDER BY id"


def test_the_initial_backfill_resumes_on_another_worker_per_chunk(
    tmp_path, temporal, pg_dsn, pg_target_dsn, pg_third_dsn
):
    execute(
        pg_dsn,
        "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)",
        f"INSERT INTO counters SELECT g, 0 FROM generate_series(1, {ROWS}) g",
    )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    first, second = machines(tmp_path, CONFIG, env, pg_third_dsn, ("worker0", "worker1"))
    first.env["SYNCENGINE_FAULT"] = "postgres.passthrough_after_commit:kill"
    workers = [first.start("worker")]
    try:
        with Writers(pg_dsn):
            assert "takeover: stream started" in second.run("apply").stdout
            assert workers[0].wait(120) == -9  # killed after its first chunk committed
            copied = rows(pg_target_dsn, "SELECT count(*) FROM counters")[0][0]
            assert 0 < copied < ROWS
            workers.append(second.start("worker"))
            wait_for(lambda: "streaming from" in second.daemon_logs(), 120)
            time.sleep(2)
        wait_for(lambda: rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY), 120)
        logs = second.daemon_logs()
        committed = re.search(r"(\d+) chunk\(s\) found committed at the target", logs)
        assert committed and int(committed.group(1)) >= 1, logs
        assert re.search(r"resuming snapshot, \d+ chunks left", logs), logs
        # the survivor copied only what the first worker had not committed
        again = re.search(r"backfill complete, (\d+) rows", logs)
        assert again and int(again.group(1)) == ROWS - copied, logs
    finally:
        stop_workers(workers)
