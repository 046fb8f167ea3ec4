"""Crash loop over a keyless table (REPLICA IDENTITY FULL, identical rows on purpose):
SIGKILL ``syncengine run`` at random moments under a load of inserts, updates and deletes of
one of several identical rows, and transactions large enough to be committed in parts (the
table fence must keep their replay from appending twice). The target must end equal to the
source as a multiset of rows: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass

import psycopg
import pytest

from tests.e2e.harness import CLI, execute, rows
from tests.reliability.rel_support import Daemon, record, size, wait_converged

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      keyless:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.evt]
          snapshot_chunk_rows: 4000
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 100, max_wait: 100ms}
    """
)


class KeylessLoad(threading.Thread):
    """Writes until stopped: small transactions of inserts (few distinct values, so duplicates
    abound, NULLs included), one-row updates and deletes by ctid, and now and then a
    transaction of 1,000 inserts (more than 8 × ``max_rows``: committed in parts)."""

    def __init__(self, dsn: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.transactions = 0
        self.big = 0
        self.error: BaseException | None = None

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"the load failed: {self.error!r}")

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.halt.is_set():
                    with conn.transaction():
                        self._one(conn)
                    self.transactions += 1
                    self.halt.wait(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def _one(self, conn: psycopg.Connection) -> None:
        pick = self.rng.random()
        kind = self.rng.choice(["a", "b", "c"])
        note = self.rng.choice([None, "x", ""])
        if pick < 0.02 or self.transactions == 20:
            self.big += 1
            conn.execute(
                "INSERT INTO evt SELECT %s, %s, i %% 5 FROM generate_series(1, 1000) i",
                (kind, note),
            )
        elif pick < 0.6:
            conn.execute(
                "INSERT INTO evt VALUES (%s, %s, %s)", (kind, note, self.rng.randint(0, 3))
            )
        elif pick < 0.8:
            conn.execute(
                "UPDATE evt SET n = n + 1 WHERE ctid = "
                "(SELECT ctid FROM evt WHERE kind = %s LIMIT 1)",
                (kind,),
            )
        else:
            conn.execute(
                "DELETE FROM evt WHERE ctid = (SELECT ctid FROM evt WHERE kind = %s LIMIT 1)",
                (kind,),
            )


def multiset(dsn: str) -> Counter[tuple[object, ...]]:
    return Counter(rows(dsn, "SELECT kind, note, n FROM evt"))


def difference(src: str, tgt: str) -> str:
    source, target = multiset(src), multiset(tgt)
    lost, extra = source - target, target - source
    return (
        "" if not lost and not extra else f"lost {sum(lost.values())}, extra {sum(extra.values())}"
    )


@pytest.mark.parametrize("phase", ["streaming", "from_start"])
def test_crash_loop_keyless_table_loses_and_duplicates_nothing(
    tmp_path, pg_dsn, pg_target_dsn, phase
):
    """``streaming``: kills once the backfill is done; ``from_start``: kills land in the
    backfill too (an interrupted copy of a keyless table is redone at an exact position)."""
    crashes = min(size("SYNCENGINE_CRASHES", 10), 10)
    if phase == "from_start":
        crashes = max(3, crashes // 2)
    seed_rows = 3000 if phase == "streaming" else 40_000
    execute(
        pg_dsn,
        "CREATE TABLE evt (kind text, note text, n int)",
        "ALTER TABLE evt REPLICA IDENTITY FULL",
        f"INSERT INTO evt SELECT 'a', NULL, i % 3 FROM generate_series(1, {seed_rows}) i",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = Daemon(cli).start()
    if phase == "streaming":
        wait_converged(lambda: _audit(pg_dsn, pg_target_dsn), limit=120)
    else:
        daemon.wait_started()
    load = KeylessLoad(pg_dsn, seed=crashes)
    load.start()
    try:
        daemon.crash_loop(crashes, min_wait=0.0, max_wait=2.0, seed=crashes)
    finally:
        load.stop()
    assert load.transactions > 100 and load.big > 0, (load.transactions, load.big)
    try:
        wait_converged(lambda: _audit(pg_dsn, pg_target_dsn), limit=600)
    except AssertionError as exc:
        raise AssertionError(f"not equal after catch-up: {exc}\n{daemon.tail()}") from None
    assert daemon.stop() == 0, daemon.tail()
    assert difference(pg_dsn, pg_target_dsn) == ""
    letters = cli.run("deadletters", "list", "--json", "--all").stdout
    assert letters.strip() == "[]", letters
    record(
        f"crash_loop_keyless_{phase}",
        crashes=daemon.kills,
        source_ops=load.transactions,
        keys=sum(multiset(pg_dsn).values()),
        lost=0,
        duplicated=0,
    )


@dataclass
class _Audit:
    """What :func:`wait_converged` needs: ok(), summary(), fields that move while catching up."""

    problem: str
    seen: int

    def ok(self) -> bool:
        return not self.problem

    def summary(self) -> str:
        return f"{self.problem} (target rows {self.seen})"


def _audit(src: str, tgt: str) -> _Audit:
    return _Audit(difference(src, tgt), sum(multiset(tgt).values()))
