"""Cluster mode with a shared state store (``state: postgresql://…``): what a worker meets is
seen from any machine.

Two workers (as on two machines) run a pipeline's stream workflow on a real Temporal dev
server; every worker and every CLI call names the same Postgres state store. Records the
mapping cannot convert go to dead letters on whichever worker applies them; ``deadletters
list`` and ``status`` run from a third directory (a machine with no worker) list every one,
with no "this machine only" note. The worker holding the stream is then SIGKILLed: the
survivor's dead letters land in the same store, next to the first ones.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.e2e.harness import CLI, execute, machines, rows, wait_for
from tests.e2e.test_e2e_cluster_stream import stop_workers, stream_holder

pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

CONFIG = """
state: ${SYNCENGINE_STATE}
cluster: {engine: temporal, address: '${TEMPORAL_ADDRESS}', task_queue: shared-state, heartbeat: 3s}
pipelines:
  shared:
    source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
    target: {type: postgres, dsn: "${TGT_DSN}"}
    batch: {max_rows: 50, max_wait: 100ms}
    mappings:
      - source: public.items
        fields:
          id: id
          n: cast(code AS int)
"""


def insert(dsn: str, first: int, last: int) -> None:
    """Rows ``first``..``last``; every tenth has a code the mapping cannot convert."""
    execute(
        dsn,
        "INSERT INTO items SELECT i, CASE WHEN i % 10 = 0 THEN 'bad' ELSE i::text END "
        f"FROM generate_series({first}, {last}) i",
    )


def lettered_ids(cli: CLI) -> list[int]:
    """The source ids of the unreplayed dead letters, as ``deadletters list`` shows them;
    the command must not say it reads one machine's file only."""
    result = cli.run("deadletters", "list", "--json")
    assert "this machine only" not in result.stderr
    return sorted(letter["payload"]["id"] for letter in json.loads(result.stdout))


def test_dead_letters_of_every_worker_are_seen_from_any_machine(
    tmp_path, temporal, pg_dsn, pg_target_dsn, pg_third_dsn
):
    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, code text)")
    insert(pg_dsn, 1, 50)
    env = {
        "SRC_DSN": pg_dsn,
        "TGT_DSN": pg_target_dsn,
        "TEMPORAL_ADDRESS": temporal.address,
    }
    clis = machines(tmp_path, CONFIG, env, pg_third_dsn)
    workers = [cli.start("worker") for cli in clis[:2]]
    elsewhere = clis[2]
    try:
        assert "shared: stream started" in elsewhere.run("apply").stdout
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM items") == [(45,)], 120)
        wait_for(lambda: lettered_ids(elsewhere) == [10, 20, 30, 40, 50], 60)
        status = json.loads(elsewhere.run("status", "--json").stdout)
        assert status[0]["dead_letters"] >= 5

        identity, _ = stream_holder(temporal.address, "shared")
        victim = next(w for w in workers if identity.startswith(f"{w.pid}@"))
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        insert(pg_dsn, 51, 70)
        survivor, _ = stream_holder(temporal.address, "shared", not_by=identity)
        assert any(survivor.startswith(f"{w.pid}@") for w in workers if w is not victim)
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM items") == [(63,)], 120)
        # a crash may write a dead letter twice (written before the commit), never lose one
        wait_for(lambda: set(lettered_ids(elsewhere)) == {10, 20, 30, 40, 50, 60, 70}, 60)
        stored = rows(pg_third_dsn, "SELECT count(*) FROM syncengine_state.dead_letters")
        assert stored[0][0] >= 7
        assert all(not (cli.dir / "state.db").exists() for cli in clis)
    finally:
        stop_workers(workers)
