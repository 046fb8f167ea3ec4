"""Replication lag from the source's clock: a probe row stamped every 100 ms, read on the target.

A stamping thread runs ``UPDATE bench_probe SET seq = seq + 1, ts = clock_timestamp()`` on the
source every 100 ms and keeps each ``(seq, ts)``; a polling thread reads ``seq`` and
``clock_timestamp()`` from the target's copy every 10 ms. Source and target are databases of
one cluster, so both timestamps come from the same clock: no offsets to estimate. Stamp ``k``
has arrived at the first poll that sees ``seq >= k`` (a consumer may apply only the newest of
several stamps; the older ones count as arrived with it), and its lag is that poll's time minus
its ``ts``: an upper bound, at most one poll (10 ms) too high.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from benchmarks.core import BenchmarkError

PROBE = "bench_probe"
STAMP_S = 0.1
POLL_S = 0.01

DDL = "CREATE TABLE bench_probe (id int PRIMARY KEY, seq bigint NOT NULL, ts timestamptz NOT NULL)"
STAMP = "UPDATE {} SET seq = seq + 1, ts = clock_timestamp() WHERE id = 1 RETURNING seq, ts"
READ = "SELECT (SELECT seq FROM {} WHERE id = 1), clock_timestamp()"


def create_probe(dsn: str, row: bool = True) -> None:
    """The probe table, with its one row on a source (``row``), empty on a target."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
        if row:
            conn.execute("INSERT INTO bench_probe VALUES (1, 0, clock_timestamp())")


class Prober:
    """Stamps on the source and watches the target until :meth:`close`. ``table``: the table
    whose row ``id = 1`` carries the stamp (``seq``, ``ts``); another table with those columns
    (and more) measures that table's own lag."""

    def __init__(self, src: str, tgt: str, table: str = PROBE) -> None:
        self.src, self.tgt = src, tgt
        self._stamp_sql = sql.SQL(STAMP).format(sql.Identifier(table))
        self._read_sql = sql.SQL(READ).format(sql.Identifier(table))
        self.stamps: dict[int, dt.datetime] = {}
        self.arrivals: dict[int, dt.datetime] = {}
        self.seen = 0
        self.errors: list[BaseException] = []
        self._halt_stamps, self._halt = threading.Event(), threading.Event()
        self._stamper = threading.Thread(target=self._guard, args=(self._stamp,), daemon=True)
        self._poller = threading.Thread(target=self._guard, args=(self._poll,), daemon=True)
        self._stamper.start()
        self._poller.start()

    def stop_stamping(self) -> None:
        """No more stamps (the target keeps being watched)."""
        self._halt_stamps.set()
        self._stamper.join(10)

    def close(self) -> None:
        self.stop_stamping()
        self._halt.set()
        self._poller.join(10)

    @property
    def last_stamp(self) -> int:
        return max(self.stamps, default=0)

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
            self.errors.append(exc)

    def _stamp(self) -> None:
        with psycopg.connect(self.src, autocommit=True) as conn:
            start = time.monotonic()
            k = 0
            while not self._halt_stamps.is_set():
                seq, ts = conn.execute(self._stamp_sql).fetchone()  # type: ignore[misc]
                self.stamps[int(seq)] = ts
                k += 1
                delay = start + k * STAMP_S - time.monotonic()
                if delay > 0:
                    self._halt_stamps.wait(delay)

    def _poll(self) -> None:
        with psycopg.connect(self.tgt, autocommit=True) as conn:
            while not self._halt.is_set():
                try:
                    seq, now = conn.execute(self._read_sql).fetchone()  # type: ignore[misc]
                except psycopg.errors.UndefinedTable:
                    seq, now = None, None  # the engine has not created its table yet
                if seq is not None and seq > self.seen:
                    for k in range(self.seen + 1, int(seq) + 1):
                        self.arrivals[k] = now
                    self.seen = int(seq)
                self._halt.wait(POLL_S)

    def wait_arrival(self, seq: int, timeout: float, alive: Callable[[], None]) -> None:
        """Until stamp ``seq`` is on the target; ``alive()`` raises when the consumer died."""
        deadline = time.monotonic() + timeout
        while self.seen < seq:
            if self.errors:
                raise BenchmarkError(f"probe failed: {self.errors[0]}")
            alive()
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"probe stamp {seq} not on the target within {timeout:.0f} s "
                    f"(last seen {self.seen})"
                )
            time.sleep(POLL_S)

    def next_arrival(self, timeout: float, alive: Callable[[], None]) -> int:
        """Waits for a stamp made from now on to arrive; returns its number."""
        deadline = time.monotonic() + 5
        wanted = self.last_stamp + 1
        while self.last_stamp < wanted:
            if self.errors or time.monotonic() > deadline:
                raise BenchmarkError(f"probe is not stamping: {self.errors[:1]}")
            time.sleep(POLL_S)
        self.wait_arrival(wanted, timeout, alive)
        return wanted

    def lags_ms(self, first: int, last: int) -> list[float]:
        """Lag of stamps ``first..last`` (all must have arrived), in stamp order."""
        return [
            (self.arrivals[k] - self.stamps[k]).total_seconds() * 1000
            for k in range(first, last + 1)
            if k in self.stamps
        ]
