"""Crash loop, Postgres → Postgres: SIGKILL ``syncengine run`` at random moments under load.

The promise under test: whatever instant the process dies (inside the backfill, inside a big
source transaction, between the data and the checkpoint, while a 1 MB TOAST value is in
flight), the restarted daemon loses nothing and applies nothing twice. Checked three ways:
a per-key comparison of the final rows (the counter, the note and a hash of the TOASTed
column), a trigger on the target that logs every write the engine made (no repeated or
backwards counter, no key inserted twice), and ``syncengine verify``.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from tests.e2e.harness import CLI, execute, wait_for
from tests.reliability.rel_pgload import SCHEMA, PgLoad, seed
from tests.reliability.rel_support import (
    Audit,
    CatchUp,
    Daemon,
    apply_audit,
    compare_rows,
    install_apply_audit,
    pg_rows,
    record,
    row_changes,
    size,
    wait_converged,
)

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      crash:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.acct, public.ledger]
          snapshot_chunk_rows: 2000
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 500, max_wait: 100ms}
    """
)
SEED_ROWS = 20_000
AUDITED = {"acct": ["counter", "note", "md5(big)"], "ledger": ["counter", "acct_id", "amount"]}


def audit(src: str, tgt: str) -> dict[str, Audit]:
    return {
        table: compare_rows(pg_rows(src, table, "id", cols), pg_rows(tgt, table, "id", cols))
        for table, cols in AUDITED.items()
    }


STREAMING = pytest.param("streaming")  # F16, fixed in ddd22a3
FROM_START = pytest.param("from_start")  # F15, ghost rows included (docs/reliability-findings.md)


@pytest.mark.parametrize("phase", [STREAMING, FROM_START])
def test_crash_loop_pg_to_pg_loses_and_duplicates_nothing(tmp_path, pg_dsn, pg_target_dsn, phase):
    """``streaming``: the load and the kills start once the backfill is done (the stream's
    exactly-once promise). ``from_start``: kills land in the backfill too (chunk resume,
    watermark reconciliation), a quarter as many."""
    crashes = size("SYNCENGINE_CRASHES", 10)
    if phase == "from_start":
        crashes = max(3, crashes // 4)
    seed(pg_dsn, SEED_ROWS)
    # Target tables made by hand (same shape) so the apply audit sees the backfill too.
    execute(pg_target_dsn, *SCHEMA[:2])
    for table in AUDITED:
        install_apply_audit(pg_target_dsn, table, "id", "counter")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    load = PgLoad(pg_dsn, first_id=SEED_ROWS + 1, seed=crashes)
    daemon = Daemon(cli).start()
    if phase == "streaming":
        wait_for(lambda: all(a.ok() for a in audit(pg_dsn, pg_target_dsn).values()), 120)
    written = row_changes(pg_dsn, AUDITED)
    load_started = time.monotonic()
    load.start()
    try:
        daemon.crash_loop(crashes, min_wait=0.0, max_wait=3.0, seed=crashes)
    finally:
        load.stop()
    load_seconds = time.monotonic() - load_started
    read_before = daemon.changes_read()  # the last daemon's, since its start
    try:
        # as long as the target keeps converging: the kills leave nearly all the load to replay
        caught_up = wait_converged(
            lambda: Audit.of_tables(audit(pg_dsn, pg_target_dsn)),
            limit=max(1800, 10 * load_seconds),
        )
    except AssertionError as exc:
        raise AssertionError(f"not consistent after catch-up: {exc}\n{daemon.tail()}") from None
    time.sleep(1.0)  # the load's last row counts reach the statistics
    catch_up = CatchUp(
        written=row_changes(pg_dsn, AUDITED) - written,
        load_seconds=load_seconds,
        replayed=daemon.changes_read() - read_before,
        seconds=caught_up,
    )
    assert daemon.stop() == 0, daemon.tail()
    final = audit(pg_dsn, pg_target_dsn)
    writes = {table: apply_audit(pg_target_dsn, table) for table in AUDITED}
    duplicated = sum(w.duplicated for w in writes.values())
    assert duplicated == 0, f"changes applied twice: {writes}\n{daemon.tail()}"
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    record(
        f"crash_loop_pg_to_pg_{phase}",
        crashes=daemon.kills,
        source_ops=sum(load.ops.values()),
        keys=sum(a.keys for a in final.values()),
        lost=sum(a.lost for a in final.values()),
        duplicated=duplicated,
        **catch_up.figures(),
    )
