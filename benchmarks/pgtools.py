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
from benchmarks.env import BenchEnv, pg_source, pg_target, pg_tool
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
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(HISTORY))
        )


FILL = (
    "INSERT INTO pgbench_branches (bid, bbalance) SELECT b, 0 FROM generate_series(1, {s}) b",
    "INSERT INTO pgbench_tellers (tid, bid, tbalance)"
    " SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, 10 * {s}) t",
    "INSERT INTO pgbench_accounts (aid, bid, abalance, filler)"
    " SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, 100000 * {s}) a",
)
"""The rows ``pgbench -i -I G`` generates, without its TRUNCATE (so a pipeline created on the
empty tables can take them as changes)."""


def pgbench_fill(dsn: str, scale: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in FILL:
            conn.execute(sql.SQL(statement).format(s=sql.Literal(scale)))
        conn.execute("VACUUM ANALYZE")


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


# -- which pgbench tables the engine can take --------------------------------------------------

_KEYLESS: dict[int, str | None] = {}


def engine_tables(env: BenchEnv) -> tuple[list[str], str | None]:
    """The pgbench tables to give the engine (and, for a fair comparison, the baselines), and
    why ``pgbench_history`` is left out when it is.

    ``pgbench_history`` has no key. Whether the engine syncs a keyless ``REPLICA IDENTITY
    FULL`` table is found out once per suite, on a three-row table (backfill, then an insert,
    an update and a delete by ``sync --once``, target compared with the source).
    """
    if id(env) not in _KEYLESS:
        _KEYLESS[id(env)] = _keyless_problem(env)
    problem = _KEYLESS[id(env)]
    if problem is None:
        return [*KEYED, HISTORY], None
    return list(KEYED), f"{HISTORY} left out (engine and baselines alike): {problem}"


def _keyless_problem(env: BenchEnv) -> str | None:
    src, tgt = env.new_pg_db("keyless_src"), env.new_pg_db("keyless_tgt")
    query = "SELECT a, b FROM bench_keyless ORDER BY a, b"
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_keyless (a int, b text)")
            conn.execute("ALTER TABLE bench_keyless REPLICA IDENTITY FULL")
            conn.execute("INSERT INTO bench_keyless VALUES (1, 'x'), (2, 'y'), (2, 'y')")
        config = env.write_config(
            "bench_keyless",
            {"source": pg_source(src, ["public.bench_keyless"]), "target": pg_target(tgt)},
        )
        env.engine("backfill", str(config), timeout=300)
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("INSERT INTO bench_keyless VALUES (3, 'z')")
            conn.execute("UPDATE bench_keyless SET b = 'w' WHERE a = 1")
            conn.execute(
                "DELETE FROM bench_keyless"
                " WHERE ctid = (SELECT min(ctid) FROM bench_keyless WHERE a = 2)"
            )
        env.engine("sync", str(config), "--once", timeout=300)
        with psycopg.connect(src) as a, psycopg.connect(tgt) as b:
            wanted, got = a.execute(query).fetchall(), b.execute(query).fetchall()
        if wanted != got:
            return f"the engine's keyless sync gave {got}, the source has {wanted}"
        return None
    except BenchmarkError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return "the engine cannot sync a keyless table yet: " + (lines[-1] if lines else "failed")
    finally:
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)
