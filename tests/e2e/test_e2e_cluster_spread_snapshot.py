"""Cluster mode: a new pipeline's initial snapshot copied chunk by chunk by three worker
processes, one SIGKILLed mid-way, while writers update, delete and insert rows.

The stream workflow plans the snapshot, runs one activity per chunk on whichever worker polls
(``snapshot_in_flight`` at a time), each chunk read in a watermark window of its own, then
starts the stream where the slot began (``syncengine/cluster/snapchunks.py``). The kill comes
after the victim committed a chunk and before the last chunk is done: its chunk in hand is
copied again elsewhere. The target ends equal to the source (TOAST values the updates leave
unsent included), every chunk was copied, and more than one worker copied chunks. Each worker
has a state file of its own (as on separate machines): nothing but Temporal and the target
carries the snapshot's progress.
"""

from __future__ import annotations

import re
import signal
import time

import psycopg
import pytest

from tests.e2e.harness import execute, machines, rows, wait_for
from tests.e2e.test_e2e_cluster_stream import stop_workers
from tests.integration.cluster.test_cluster_snapchunks import QUERY, Writers, table

pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

ROWS = 30_000
CHUNK_ROWS = 1_000
CHUNKS = ROWS // CHUNK_ROWS + 1  # the last one above the last bound
CONFIG = f"""
state: ${{SYNCENGINE_STATE}}
cluster: {{engine: temporal, address: '${{TEMPORAL_ADDRESS}}', task_queue: spread-snapshot,
          heartbeat: 3s, snapshot_in_flight: 3}}
pipelines:
  spread:
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.items],
             snapshot_chunk_rows: {CHUNK_ROWS}}}
    target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
    batch: {{max_rows: 500, max_wait: 100ms}}
"""
DONE = re.compile(r"spread: snapshot chunk (\d+) of public\.items: \d+ row\(s\)")


def test_three_workers_copy_the_snapshot_one_killed_mid_way(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    execute(pg_dsn, *table(ROWS))
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    names = ("worker0", "worker1", "worker2", "elsewhere")
    clis = machines(tmp_path, CONFIG, env, "", names)
    for cli in clis:
        cli.env["SYNCENGINE_STATE"] = str(cli.dir / "state.db")
    *hosts, ops = clis
    workers = [cli.start("worker") for cli in hosts]
    try:
        with Writers(pg_dsn, ROWS) as writers:
            assert "spread: stream started" in ops.run("apply").stdout
            wait_for(lambda: DONE.search(hosts[0].daemon_logs()) is not None, 120)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(30)
            done_then = {m for cli in hosts for m in DONE.findall(cli.daemon_logs())}
            assert len(done_then) < CHUNKS  # killed mid-way
            wait_for(lambda: any("spread snapshot done" in c.daemon_logs() for c in hosts), 180)
            time.sleep(2)  # streamed writes after the snapshot
        assert writers.writes > 500
        wait_for(lambda: rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY), 120)
        copied_by = [{int(m) for m in DONE.findall(cli.daemon_logs())} for cli in hosts]
        assert set().union(*copied_by) == set(range(CHUNKS))
        assert copied_by[0] and sum(1 for c in copied_by if c) >= 2, copied_by
        logs = "\n".join(cli.daemon_logs() for cli in hosts)
        assert "backfill complete" not in logs  # no stream attempt copied on its own
    finally:
        stop_workers(workers)


def test_an_update_while_chunks_are_copied_plans_the_snapshot_again(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    """``apply`` of an edited config while a chunk is in hand: the copy is cancelled and the
    workflow starts over with the new config (planned again on the kept slot), instead of
    retrying chunks under a config no worker runs any more."""
    execute(pg_dsn, *table(4_000))
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    config = (
        CONFIG.replace("spread-snapshot", "spread-update")
        .replace("snapshot_in_flight: 3", "snapshot_in_flight: 1")
        .replace("  spread:", "  respread:")
    )
    (cli,) = machines(tmp_path, config, env, "", ("worker0",))
    cli.env["SYNCENGINE_STATE"] = str(cli.dir / "state.db")
    workers = [cli.start("worker")]
    holder = psycopg.connect(pg_target_dsn)
    try:
        assert "respread: stream started" in cli.run("apply").stdout
        wait_for(lambda: rows(pg_target_dsn, "SELECT to_regclass('public.items')")[0][0], 60)
        holder.execute("LOCK TABLE items IN SHARE MODE")  # the chunk in hand waits on it
        wait_for(lambda: "respread: snapshot chunk" in cli.daemon_logs(), 60)
        cli.config.write_text(config.replace("max_rows: 500", "max_rows: 400"))
        assert "respread: stream updated" in cli.run("apply").stdout
        holder.rollback()
        planned = "respread: initial snapshot spread over workers"
        wait_for(lambda: cli.daemon_logs().count(planned) >= 2, 60)
        wait_for(lambda: "respread: spread snapshot done" in cli.daemon_logs(), 120)
        wait_for(lambda: rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY), 120)
    finally:
        holder.close()
        stop_workers(workers)
