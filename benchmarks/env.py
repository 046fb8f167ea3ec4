"""Throwaway servers, fresh databases, pipeline configs and the ``syncengine`` CLI.

Servers are the ones the tests start (``tests/servers.py``), created on first use and destroyed
at the end of the suite. Every scenario run gets fresh databases and a fresh state file, so runs
never see each other's data, slots or checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from benchmarks.core import BenchmarkError
from benchmarks.measure import Process, ProcessRun, describe_failure
from tests.servers import MongoServer, PostgresServer, pg_bin_dir


def syncengine_exe() -> str:
    return str(Path(sys.executable).parent / "syncengine")


def pg_tool(name: str) -> str:
    found = pg_bin_dir() / name
    if found.exists():
        return str(found)
    other = shutil.which(name)
    if other is None:
        raise BenchmarkError(f"{name} not found (PostgreSQL client binaries)")
    return other


def dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


class BenchEnv:
    """Servers and scratch space for one suite run."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="syncengine-bench-"))
        self._pg: PostgresServer | None = None
        self._pg_targets: PostgresServer | None = None
        self._mongo: MongoServer | None = None
        self.deadline: float | None = None
        """``time.monotonic()`` by which the current scenario must end (quick-mode budget)."""

    def limit(self, timeout: float) -> float:
        """``timeout``, shortened to what is left of the scenario's budget."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.monotonic()
        if left < 1:
            raise BenchmarkError(
                "quick-mode time budget used up: the engine is too slow for --quick at these "
                "sizes (the full run has no budget)"
            )
        return min(timeout, left)

    # -- servers ----------------------------------------------------------------------------

    @property
    def pg(self) -> PostgresServer:
        if self._pg is None:
            self._pg = PostgresServer().start()
        return self._pg

    @property
    def pg_targets(self) -> PostgresServer:
        """A second cluster, for the target databases of the CDC drains.

        On one cluster every write a consumer applies lengthens the WAL the next consumer of
        the same source must read: ``sync --once`` reads up to the WAL's end when it starts,
        so each drain read the target writes of every drain before it (the engine measured
        78k, 58k, 48k changes/s in a run's three attempts while the baselines, which stop at
        the workload's end, did not slow). Targets here write a WAL of their own."""
        if self._pg_targets is None:
            self._pg_targets = PostgresServer().start()
        return self._pg_targets

    @property
    def mongo(self) -> MongoServer:
        if self._mongo is None:
            self._mongo = MongoServer().start()
        return self._mongo

    def close(self) -> None:
        for server in (self._pg, self._pg_targets, self._mongo):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.destroy()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- databases --------------------------------------------------------------------------

    def new_pg_db(self, prefix: str, server: PostgresServer | None = None) -> str:
        """A fresh database on ``server`` (default: the main cluster, :attr:`pg`)."""
        server = server or self.pg
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return server.dsn(name)

    def drop_pg_db(self, dsn: str) -> None:
        """Drop a database and every replication slot in it (slots pin WAL for everyone)."""
        name = dbname(dsn)
        with psycopg.connect(self._server_of(dsn).dsn(), autocommit=True) as conn:
            drop_slots(conn, name)
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def drop_slots(self, dsn: str) -> None:
        """Drop the slots a finished run left in ``dsn``'s database (they pin WAL)."""
        with psycopg.connect(self._server_of(dsn).dsn(), autocommit=True) as conn:
            drop_slots(conn, dbname(dsn))

    def _server_of(self, dsn: str) -> PostgresServer:
        port = int(conninfo_to_dict(dsn).get("port") or 0)
        if self._pg_targets is not None and port == self._pg_targets.port:
            return self._pg_targets
        return self.pg

    def new_mongo_db(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:8]}"

    def drop_mongo_db(self, name: str) -> None:
        from pymongo import MongoClient

        with MongoClient(self.mongo.uri) as client:
            client.drop_database(name)

    # -- the engine -------------------------------------------------------------------------

    def write_config(self, name: str, pipeline: Mapping[str, Any]) -> Path:
        """A one-pipeline config with its own fresh state file."""
        run_dir = self.work / f"{name}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir()
        path = run_dir / "pipeline.yaml"
        config = {"state": str(run_dir / "state.db"), "pipelines": {name: dict(pipeline)}}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start_engine(self, *args: str) -> Process:
        return Process([syncengine_exe(), *args])

    def engine(self, *args: str, timeout: float) -> ProcessRun:
        """Run one CLI command to completion; any failure raises with command and stderr."""
        result = self.start_engine(*args).wait(self.limit(timeout))
        if result.returncode != 0 or result.timed_out:
            raise BenchmarkError(describe_failure(result, "engine"))
        return result


def drop_slots(conn: psycopg.Connection[Any], database: str) -> None:
    rows = conn.execute(
        "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (database,)
    ).fetchall()
    for slot, pid in rows:
        if pid is not None:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def flush_writes(conn: psycopg.Connection[Any]) -> None:
    """The setup's writes on disk before anything is timed. A bulk load leaves Postgres's
    buffers and the kernel's page cache dirty; the kernel writes them back ~30 s later
    (``vm.dirty_expire_centisecs``), and a commit's WAL write that meets that writeback
    waits: pg_add_table's "before" window, right after loading C, had target commits of
    ~0.5 s and a p99 lag of 230-380 ms that was the benchmark's own load (82 ms flushed)."""
    conn.execute("CHECKPOINT")
    os.sync()


def replication_dsn(dsn: str) -> str:
    return make_conninfo(dsn, replication="database")


def pg_source(dsn: str, tables: list[str]) -> dict[str, Any]:
    return {"type": "postgres", "dsn": dsn, "tables": tables}


def pg_target(dsn: str) -> dict[str, Any]:
    return {"type": "postgres", "dsn": dsn, "schema": "public"}
