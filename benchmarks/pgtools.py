"""PostgreSQL's own tools as baselines: the ``psql COPY | psql COPY`` pipe and ``pgbench``.

Both run as child processes against the suite's cluster, so what they cost is what a user who
scripted them would wait for. ``pgbench`` is the server's own load generator; its tables are
``pgbench_accounts`` (``-s 1`` = 100,000 rows), ``pgbench_branches``, ``pgbench_tellers`` (all
keyed) and ``pgbench_history`` (no key: insert-only, given ``REPLICA IDENTITY FULL`` here).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from benchmarks.core import BenchmarkError
from benchmarks.env import pg_tool
from benchmarks.measure import Stopwatch, run_process

KEYED = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")
HISTORY = "pgbench_history"
CLIENTS = ("-c", "4", "-j", "2")
"""pgbench's clients and threads: enough to keep both cores busy without a connection storm."""


def psql(dsn: str, command: str) -> list[str]:
    return [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", command]


def copy_pipe(src: str, tgt: str, tables: Sequence[str], binary: bool, timeout: float) -> float:
    """Seconds for ``psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"`` per table.

    ``binary`` adds ``(FORMAT binary)`` on both ends: no text conversion at all, the fastest
    copy a user can script. The target tables must exist (created before the clock).
    """
    option = " (FORMAT binary)" if binary else ""
    with Stopwatch() as watch:
        for table in tables:
            name = sql.Identifier(table).as_string()
            out = subprocess.Popen(
                psql(src, f"COPY {name} TO STDOUT{option}"), stdout=subprocess.PIPE
            )
            into = subprocess.run(
                psql(tgt, f"COPY {name} FROM STDIN{option}"),
                stdin=out.stdout,
                capture_output=True,
                timeout=timeout,
            )
            out.stdout.close()  # type: ignore[union-attr]
            out.wait(timeout)
            if out.returncode or into.returncode:
                kind = "binary " if binary else ""
                raise BenchmarkError(
                    f"baseline {kind}COPY pipe of {table} failed: {into.stderr.decode()[-500:]}"
                )
    return watch.seconds


# -- pgbench ----------------------------------------------------------------------------------


def pgbench_init(dsn: str, scale: int, timeout: float, schema_only: bool = False) -> None:
    """``pgbench -i -s scale``; ``schema_only``: the tables and their keys, no rows."""
    steps = ["-I", "dtp"] if schema_only else ["-I", "dtgvp"]
    run_process(
        [pg_tool("pgbench"), "-i", "-q", "-s", str(scale), *steps, dsn],
        timeout=timeout,
        what="pgbench -i",
    )
    if not schema_only:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(HISTORY))
            )


@dataclass(frozen=True)
class PgbenchRun:
    transactions: int
    seconds: float
    tps: float


def pgbench_load(dsn: str, seconds: float, timeout: float, rate: int | None = None) -> PgbenchRun:
    """The TPC-B-like script for ``seconds`` (``-R rate``: throttled to ``rate`` tps)."""
    args = [pg_tool("pgbench"), "-n", *CLIENTS, "-T", str(max(1, round(seconds)))]
    if rate is not None:
        args += ["-R", str(rate)]
    run = run_process([*args, dsn], timeout=timeout, what="pgbench")
    return parse_pgbench(run.stdout, run.seconds)


def parse_pgbench(output: str, seconds: float) -> PgbenchRun:
    done = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if done is None:
        raise BenchmarkError(f"pgbench output not understood:\n{output[-800:]}")
    if failed is not None and int(failed.group(1)):
        raise BenchmarkError(f"pgbench: {failed.group(1)} transactions failed")
    transactions = int(done.group(1))
    tps = re.search(r"tps = ([\d.]+)", output)
    return PgbenchRun(transactions, seconds, float(tps.group(1)) if tps else transactions / seconds)


CHANGES_PER_TXN = {"pgbench_accounts": 1, "pgbench_tellers": 1, "pgbench_branches": 1, HISTORY: 1}
"""Row changes a TPC-B-like transaction makes in each table (three updates, one insert)."""


def changes(transactions: int, tables: Sequence[str]) -> int:
    return transactions * sum(CHANGES_PER_TXN.get(t, 0) for t in tables)
