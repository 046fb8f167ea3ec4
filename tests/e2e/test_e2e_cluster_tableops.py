"""Per-table operations on a pipeline that streams on cluster workers (a shared state store).

Two workers run the stream workflow of a pipeline over tables a and b on a real Temporal dev
server; every worker and the CLI (run from a third directory, a machine without a worker) name
the same Postgres state store, through which the requests travel. Writers change both tables
the whole time. ``pause`` of b waits for the worker holding the stream to confirm it; b's
target then stays still while a flows, also after that worker is SIGKILLed and the other one
takes the stream over (it goes on holding b's changes). ``resume`` waits for the worker to
release them and b converges; ``resnapshot`` of a is carried out by the worker while b
streams; ``reload`` is refused (``apply`` is how a cluster takes a new config).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.harness import execute, machines, rows, wait_for
from tests.e2e.test_e2e_cluster_stream import stop_workers, stream_holder
from tests.e2e.test_e2e_pause import SNAPSHOT, Writers

pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

CONFIG = """
state: ${SYNCENGINE_STATE}
cluster: {engine: temporal, address: '${TEMPORAL_ADDRESS}', task_queue: cluster-tableops,
          heartbeat: 3s}
pipelines:
  ops:
    source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.a, public.b]}
    target: {type: postgres, dsn: "${TGT_DSN}"}
    batch: {max_rows: 25, max_wait: 50ms}
"""


def same(src: str, tgt: str, table: str) -> bool:
    return rows(src, SNAPSHOT.format(table)) == rows(tgt, SNAPSHOT.format(table))


def test_pause_resume_resnapshot_reach_the_cluster_stream(
    tmp_path, temporal, pg_dsn, pg_target_dsn, pg_third_dsn
):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, v text)",
        "CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, v text)",
        "INSERT INTO a SELECT i, 0, 'a' FROM generate_series(1, 300) i",
        "INSERT INTO b SELECT i, 0, 'b' FROM generate_series(1, 300) i",
    )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    clis = machines(tmp_path, CONFIG, env, pg_third_dsn)
    workers = [cli.start("worker") for cli in clis[:2]]
    elsewhere = clis[2]
    try:
        assert "ops: stream started" in elsewhere.run("apply").stdout
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a") and same(pg_dsn, pg_target_dsn, "b"), 120)
        identity, _ = stream_holder(temporal.address, "ops")
        with Writers(pg_dsn) as writers:
            time.sleep(1)
            paused = elsewhere.run("pause", "--pipeline", "ops", "--table", "b", "--wait", "60")
            assert "ops: paused public.b" in paused.stdout
            frozen = rows(pg_target_dsn, SNAPSHOT.format("b"))
            a_before = rows(pg_target_dsn, SNAPSHOT.format("a"))
            time.sleep(2)
            victim = next(w for w in workers if identity.startswith(f"{w.pid}@"))
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            stream_holder(temporal.address, "ops", not_by=identity)
            time.sleep(4)  # the survivor streams and holds b's changes
            assert rows(pg_target_dsn, SNAPSHOT.format("b")) == frozen
            assert rows(pg_target_dsn, SNAPSHOT.format("a")) != a_before
            resumed = elsewhere.run("resume", "--pipeline", "ops", "--table", "b", "--wait", "120")
            assert "ops: resumed public.b" in resumed.stdout
            handed = elsewhere.run("resnapshot", "--pipeline", "ops", "--table", "a")
            assert "handed to the cluster's stream" in handed.stdout
            time.sleep(2)
        assert writers.count > 100
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "b"), 60)
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a"), 60)
        wait_for(lambda: not rows(pg_third_dsn, OPEN_REQUESTS), 60)
        assert rows(pg_third_dsn, DONE_REQUESTS)  # the worker carried the re-snapshot out
        logs = "\n".join(cli.daemon_logs() for cli in clis[:2])
        assert "public.b paused" in logs and "public.b resumed" in logs

        refused = elsewhere.run("reload", check=False)
        assert refused.returncode == 2
        assert "syncengine apply" in refused.stderr
    finally:
        stop_workers(workers)


OPEN_REQUESTS = (
    "SELECT id FROM syncengine_state.table_requests WHERE status IN ('pending', 'running')"
)
DONE_REQUESTS = (
    "SELECT id FROM syncengine_state.table_requests WHERE source_table = 'public.a' "
    "AND status = 'done'"
)


def test_a_table_added_by_apply_is_copied_beside_the_cluster_stream(
    tmp_path, temporal, pg_dsn, pg_target_dsn, pg_third_dsn
):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, v text)",
        "CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, v text)",
        "INSERT INTO a SELECT i, 0, 'a' FROM generate_series(1, 300) i",
        "INSERT INTO b SELECT i, 0, 'b' FROM generate_series(1, 2000) i",
    )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    # its own pipeline name: workflow IDs are per pipeline in the test server's one namespace
    with_b = CONFIG.replace("cluster-tableops", "cluster-addtable").replace("  ops:", "  grown:")
    only_a = with_b.replace("tables: [public.a, public.b]", "tables: [public.a]")
    clis = machines(tmp_path, only_a, env, pg_third_dsn)
    workers = [cli.start("worker") for cli in clis[:2]]
    elsewhere = clis[2]
    try:
        first = elsewhere.run("apply").stdout
        assert "grown: stream started" in first and "added" not in first
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a"), 120)
        assert not rows(pg_target_dsn, "SELECT to_regclass('public.b')")[0][0]
        with Writers(pg_dsn) as writers:
            time.sleep(1)
            for cli in clis:  # every machine's config names the table now
                cli.config.write_text(with_b)
            applied = elsewhere.run("apply").stdout
            assert "grown: public.b added: its rows are copied beside the stream" in applied
            assert "grown: stream updated" in applied
            time.sleep(5)
        assert writers.count > 100
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "b"), 120)
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a"), 60)
        wait_for(lambda: not rows(pg_third_dsn, OPEN_REQUESTS), 60)
        assert "stream running" in elsewhere.run("apply").stdout  # nothing added twice
        assert len(rows(pg_third_dsn, "SELECT id FROM syncengine_state.table_requests")) == 1
    finally:
        stop_workers(workers)
