"""One fault scenario, Postgres → Postgres: load, fault while streaming, catch up, audit.

The fault is a callable the test passes in (restart a server, cut the proxy, ...). The daemon
is never restarted by the test: recovering is its job.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from tests.e2e.harness import CLI, execute, wait_for
from tests.reliability.rel_pgload import SCHEMA, PgLoad, seed
from tests.reliability.rel_support import (
    Daemon,
    apply_audit,
    compare_rows,
    install_apply_audit,
    pg_rows,
)

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      PIPELINE:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.acct, public.ledger]
          heartbeat: 1s
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 500, max_wait: 100ms, timeout: 20s}
    """
)
COLUMNS = {"acct": ["counter", "note", "md5(big)"], "ledger": ["counter", "acct_id", "amount"]}


def new_database(admin_dsn: str, prefix: str) -> str:
    """A fresh database on the server ``admin_dsn`` points at; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def consistent(src: str, tgt: str) -> str | None:
    """None when every audited table matches key for key; else a summary."""
    problems = {}
    for table, cols in COLUMNS.items():
        audit = compare_rows(pg_rows(src, table, "id", cols), pg_rows(tgt, table, "id", cols))
        if not audit.ok():
            problems[table] = audit.summary()
    return str(problems) if problems else None


def run_scenario(
    tmp_path: Path,
    src: str,
    tgt: str,
    fault: Callable[[Daemon], None],
    *,
    daemon_src: str | None = None,
    daemon_tgt: str | None = None,
    catch_up: float = 150,
) -> dict[str, int]:
    """Seed, stream, inject ``fault`` under load, then prove nothing lost or duplicated.

    ``daemon_src``/``daemon_tgt``: what the daemon connects to, when not the servers
    themselves (a proxy in between); the audit always reads the servers directly.
    """
    seed(src, 3_000, big_every=300)
    execute(tgt, *SCHEMA[:2])
    for table in COLUMNS:
        install_apply_audit(tgt, table, "id", "counter")
    # Slot names are per cluster: one pipeline name per scenario, so scenarios sharing a
    # server never meet each other's slot.
    config = CONFIG.replace("PIPELINE", f"fault_{uuid.uuid4().hex[:8]}")
    cli = CLI(tmp_path, config, {"SRC_DSN": daemon_src or src, "TGT_DSN": daemon_tgt or tgt})
    daemon = Daemon(cli).start()
    wait_for(lambda: consistent(src, tgt) is None, timeout=90)  # streaming now
    load = PgLoad(src, first_id=10_000, pause=0.01)
    load.start()
    time.sleep(1.5)
    try:
        fault(daemon)
        time.sleep(1.5)
    finally:
        load.stop()
    try:
        took = wait_for(lambda: consistent(src, tgt) is None, timeout=catch_up, interval=0.5)
    except AssertionError:
        raise AssertionError(
            f"not consistent {catch_up}s after the fault: {consistent(src, tgt)}\n{daemon.tail()}"
        ) from None
    assert daemon.alive(), f"daemon exited instead of recovering:\n{daemon.tail()}"
    assert daemon.stop() == 0, daemon.tail()
    writes = {t: apply_audit(tgt, t) for t in COLUMNS}
    assert sum(w.duplicated for w in writes.values()) == 0, f"applied twice: {writes}"
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return {"source_ops": sum(load.ops.values()), "recovery_seconds": int(took)}
