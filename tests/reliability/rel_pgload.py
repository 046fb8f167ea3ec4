"""A steady, mixed write load on a Postgres source, in a background thread.

Two tables: ``acct`` (the audited one: ``counter`` goes up by one on every update, keys are
never reused) and ``ledger`` (written together with ``acct`` in multi-table transactions).
The mix covers what breaks replication: single-row inserts/updates/deletes, updates that
leave a ~1 MB TOASTed column unchanged (pgoutput sends it as 'u'), updates that rewrite it,
transactions over both tables, and big multi-row transactions (a crash lands inside them).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import psycopg

SCHEMA = (
    "CREATE TABLE acct (id bigint PRIMARY KEY, counter integer NOT NULL, note text, big text)",
    "CREATE TABLE ledger (id bigint PRIMARY KEY, acct_id bigint NOT NULL, "
    "counter integer NOT NULL, amount numeric(12,2))",
    "ALTER TABLE acct REPLICA IDENTITY DEFAULT",
)
#: ~1 MB of hex that compresses poorly, so it is stored out of line (TOAST)
BIG = "(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, %s) g)"
BIG_CHUNKS = 32_768  # 32 hex chars each: 1 MiB


def seed(dsn: str, rows: int, big_every: int = 500) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO acct SELECT i, 0, 'seed ' || i, NULL FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute(
            f"UPDATE acct SET big = {BIG} WHERE id %% %s = 0",
            (BIG_CHUNKS // 8, big_every),
        )
        conn.execute(
            "INSERT INTO ledger SELECT i, i, 0, i / 100.0 FROM generate_series(1, %s) i",
            (rows // 10,),
        )


class PgLoad(threading.Thread):
    """Runs until ``stop()``; ``ops`` counts committed operations by kind."""

    def __init__(self, dsn: str, first_id: int, seed: int = 1, pause: float = 0.004) -> None:
        super().__init__(daemon=True, name="pg-load")
        self.dsn = dsn
        self.next_id = first_id
        self.rng = random.Random(seed)
        self.pause = pause
        self.ops: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self.live: list[int] = []
        #: times the server went away under the load (restarts)
        self.reconnects = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(60)
        if self.error:
            raise AssertionError(f"load generator failed: {self.error!r}")

    def run(self) -> None:
        """Keeps writing through server restarts (reconnecting), until stopped."""
        first = True
        while not self._halt.is_set():
            try:
                with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                    if first:
                        self.live = [r[0] for r in conn.execute("SELECT id FROM acct")]
                        conn.commit()
                        first = False
                    while not self._halt.is_set():
                        self._one(conn)
                        time.sleep(self.pause)
            except psycopg.OperationalError:
                self.reconnects += 1
                time.sleep(0.3)
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.error = exc
                return

    def _pick(self) -> int:
        return self.rng.choice(self.live)

    def _one(self, conn: psycopg.Connection) -> None:
        roll = self.rng.random()
        with conn.transaction():
            if roll < 0.25 or len(self.live) < 50:
                new = self.next_id
                self.next_id += 1
                conn.execute("INSERT INTO acct VALUES (%s, 0, %s, NULL)", (new, f"n{new}"))
                self.live.append(new)
                kind = "insert"
            elif roll < 0.60:
                conn.execute(
                    "UPDATE acct SET counter = counter + 1, note = %s WHERE id = %s",
                    (f"u{self.rng.random():.6f}", self._pick()),
                )
                kind = "update"
            elif roll < 0.62:
                conn.execute(
                    f"UPDATE acct SET counter = counter + 1, big = {BIG} WHERE id = %s",
                    (BIG_CHUNKS, self._pick()),
                )
                kind = "toast_write"
            elif roll < 0.74:
                victim = self.live.pop(self.rng.randrange(len(self.live)))
                conn.execute("DELETE FROM acct WHERE id = %s", (victim,))
                kind = "delete"
            elif roll < 0.96:
                a, b = self._pick(), self._pick()
                conn.execute("UPDATE acct SET counter = counter + 1 WHERE id IN (%s, %s)", (a, b))
                new = self.next_id
                self.next_id += 1
                conn.execute(
                    "INSERT INTO ledger VALUES (%s, %s, 0, %s)", (new, a, self.rng.randint(1, 9999))
                )
                conn.execute(
                    "UPDATE ledger SET counter = counter + 1 WHERE id = "
                    "(SELECT min(id) FROM ledger WHERE id >= %s)",
                    (self.rng.randint(1, new),),
                )
                kind = "multi_table"
            else:
                conn.execute(
                    "UPDATE acct SET counter = counter + 1 WHERE id %% 97 = %s",
                    (self.rng.randrange(97),),
                )
                kind = "big_transaction"
        self.ops[kind] += 1
