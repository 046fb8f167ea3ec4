"""A re-backfill killed (SIGKILL) part-way, or the stream after it, loses and repeats nothing.

A re-backfill (``backfill`` of a pipeline that already has a checkpoint C) keeps C: its
snapshot rows sit at positions above C, fenced per key, and the stream replays from C (a
snapshot only upserts, so deletes since C must come from the stream). Killed at either side
of its end, the next runs must converge on the source with no stale change applied over a
newer one and no deleted key brought back; changes made while the re-backfill ran (between
its snapshot position and the resumed run) must reach the target.

Each ``acct`` row has a counter the source increments on every update, and keys are never
reused, so the apply audit (a trigger on the target) shows a stale replay as a counter going
backwards and a resurrected key as a second insert.
"""

from __future__ import annotations

import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.harness import CLI, execute, rows
from tests.reliability.rel_support import apply_audit, install_apply_audit

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      reback:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.acct]
          snapshot_chunk_rows: 200
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 100, max_wait: 100ms}
    """
)
TABLE = "CREATE TABLE acct (id int PRIMARY KEY, counter int NOT NULL, note text)"
ROWS = 2_000


def _changes(dsn: str, step: int) -> None:
    """Updates (counter + 1) across the key range, deletes and new keys (never reused)."""
    execute(
        dsn,
        f"UPDATE acct SET counter = counter + 1, note = 'u{step}' WHERE id % 7 = {step % 7}",
        f"DELETE FROM acct WHERE id % 97 = {step}",
        f"INSERT INTO acct SELECT g, 0, 'new{step}' FROM generate_series("
        f"{100_000 * step}, {100_000 * step + 49}) g",
        f"UPDATE acct SET counter = counter + 1 WHERE id BETWEEN {100_000 * step} "
        f"AND {100_000 * step + 9}",
    )


def _killed(cli: CLI, *args: str, point: str) -> None:
    """Run ``syncengine args`` until it SIGKILLs itself at the fault point ``point``."""
    cli.env["SYNCENGINE_FAULT"] = f"{point}:kill"
    try:
        result = cli.run(*args, check=False)
    finally:
        del cli.env["SYNCENGINE_FAULT"]
    assert result.returncode == -9, result.stdout + result.stderr


def _chunks(state: Path) -> tuple[int, int]:
    """(done, not done) chunk rows of the pipeline in the SQLite state store."""
    with closing(sqlite3.connect(state)) as db:
        found = dict(
            db.execute(
                "SELECT status = 'done', count(*) FROM chunks WHERE pipeline = 'reback' GROUP BY 1"
            ).fetchall()
        )
    return found.get(1, 0), found.get(0, 0)


def _state(dsn: str) -> list[tuple[object, ...]]:
    return rows(dsn, "SELECT id, counter, note FROM acct ORDER BY id")


@pytest.mark.parametrize("when", ["inside", "inside_then_stream", "after"])
def test_killed_rebackfill_loses_and_repeats_nothing(tmp_path, pg_dsn, pg_target_dsn, when):
    """``inside``: killed at its first committed piece, then ``backfill`` again (the resume).
    ``inside_then_stream``: killed likewise, then straight to ``sync --once`` (the stream from
    C with part of the re-backfill applied). ``after``: the re-backfill completes and the
    stream after it is killed at its first commit."""
    execute(
        pg_dsn,
        TABLE,
        f"INSERT INTO acct SELECT g, 0, 'seed' FROM generate_series(1, {ROWS}) g",
    )
    execute(pg_target_dsn, TABLE)
    install_apply_audit(pg_target_dsn, "acct", "id", "counter")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")  # the first backfill: checkpoint C
    assert _state(pg_target_dsn) == _state(pg_dsn)
    _changes(pg_dsn, 1)  # after C, before the re-backfill: the stream's to carry
    if when == "after":
        cli.run("backfill")
        _changes(pg_dsn, 2)
        _killed(cli, "sync", "--once", point="postgres.after_commit")
    else:
        _killed(cli, "backfill", point="postgres.after_commit")
        _, left = _chunks(tmp_path / "state.db")
        assert left > 0, "the kill must land inside the re-backfill"
        _changes(pg_dsn, 2)  # while the re-backfill is unfinished
        if when == "inside":
            cli.run("backfill")
    _changes(pg_dsn, 3)
    cli.run("sync", "--once")
    assert _state(pg_target_dsn) == _state(pg_dsn)
    audit = apply_audit(pg_target_dsn, "acct")
    assert audit.regressed == 0 and audit.reinserted == 0, audit.samples
    result = cli.run("verify", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
