"""Shared pieces of the reliability suite: sizes, the figures file, daemons, per-key audits.

Sizes come from the environment so one suite serves both the quick run (part of the normal
test command) and ``./scripts/reliability --long``:

=============================  =======  ========  =========================================
variable                       default  --long    what
=============================  =======  ========  =========================================
SYNCENGINE_CRASHES             10       200       SIGKILLs of ``run`` in the Postgres crash loop
SYNCENGINE_CRASHES_MONGO       4        50        SIGKILLs in each Mongo crash loop
SYNCENGINE_OUTAGE_SECONDS      10       30        how long the target is stopped
SYNCENGINE_FUZZ_EXAMPLES       300      5000      hypothesis examples per fuzz property
SYNCENGINE_BIG_TEXT_MB         8        100       the oversized text value
SYNCENGINE_BIG_DOC_MB          4        16        the oversized document
=============================  =======  ========  =========================================

Every scenario adds what it survived to ``$SYNCENGINE_RELIABILITY_REPORT`` (JSON lines) when
that variable is set; ``scripts/reliability`` sums them up for the README.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.e2e.harness import CLI
from tests.servers import free_port

STARTED: list[subprocess.Popen[str]] = []


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def size(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def record(scenario: str, **figures: int) -> None:
    """Append what a scenario survived/tried to the figures file (when one is configured)."""
    path = os.environ.get("SYNCENGINE_RELIABILITY_REPORT")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"scenario": scenario, **figures}) + "\n")


class Daemon:
    """One ``syncengine run`` process at a time, killed and restarted on demand.

    Every process started is remembered in :data:`STARTED`; the suite's autouse fixture
    SIGKILLs whatever a failed test left running.
    """

    def __init__(self, cli: CLI, *args: str) -> None:
        self.cli = cli
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.kills = 0

    def start(self) -> Daemon:
        self.port = free_port()
        self.proc = self.cli.start("run", "--metrics-port", str(self.port), *self.args)
        STARTED.append(self.proc)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, no flush."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"daemon died by itself:\n{self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def state(self) -> str | None:
        """The pipelines' states from ``/healthz`` (None while the endpoint is not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        except OSError:
            return None
        return ",".join(p["state"] for p in body["pipelines"].values())

    def changes_read(self) -> int:
        """Source changes the running process has read and committed (its
        ``syncengine_changes_read_total``; 0 while its metrics are not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("syncengine_changes_read_total{")
            )
        )

    def wait_started(self, timeout: float = 60) -> None:
        """Until the pipelines are past "starting" (connected: backfilling or streaming).

        Killing before that tests nothing but Python's import system, so a crash loop waits
        for it and then picks its random moment.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and "starting" not in state:
                return
            assert self.alive(), f"daemon exited during startup:\n{self.tail()}"
            time.sleep(0.05)
        raise AssertionError(f"daemon not started within {timeout}s:\n{self.tail()}")

    def crash_loop(self, crashes: int, min_wait: float, max_wait: float, seed: int) -> None:
        """Kill at ``crashes`` random moments, restarting each time."""
        rng = random.Random(seed)
        for _ in range(crashes):
            self.wait_started()
            time.sleep(rng.uniform(min_wait, max_wait))
            self.kill()
            self.start()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and the exit code (the daemon drains and exits 0)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not drain within {timeout}s:\n{self.tail()}"
            ) from None

    def tail(self, chars: int = 6000) -> str:
        return self.cli.daemon_logs()[-chars:]


@dataclass
class Audit:
    """A per-key comparison of source and target at the end of a run."""

    keys: int = 0
    #: in the source, not in the target / target counter behind the source
    missing: list[object] = field(default_factory=list)
    behind: list[object] = field(default_factory=list)
    #: in the target, not in the source (a lost delete, or a replayed insert)
    extra: list[object] = field(default_factory=list)
    #: counter equal but another column differs (a torn or stale value, e.g. TOAST)
    torn: list[object] = field(default_factory=list)
    #: target counter ahead of the source: impossible unless the audit itself is wrong
    ahead: list[object] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.behind) + len(self.extra) + len(self.torn)

    def ok(self) -> bool:
        return not (self.lost or self.ahead)

    def summary(self) -> str:
        parts = {k: v[:10] for k, v in asdict(self).items() if isinstance(v, list) and v}
        return f"{self.keys} keys; problems: {parts or 'none'}"

    @classmethod
    def of_tables(cls, audits: dict[str, Audit]) -> Audit:
        """Several tables' audits as one, keys named ``table:key``."""
        whole = cls(keys=sum(a.keys for a in audits.values()))
        for table, audit in audits.items():
            for name in ("missing", "behind", "extra", "torn", "ahead"):
                getattr(whole, name).extend(f"{table}:{k}" for k in getattr(audit, name))
        return whole


def compare_rows(
    source: dict[object, tuple[object, ...]], target: dict[object, tuple[object, ...]]
) -> Audit:
    """Rows as key → (counter, other values...)."""
    audit = Audit(keys=len(source))
    for key, row in source.items():
        got = target.get(key)
        if got is None:
            audit.missing.append(key)
        elif got[0] < row[0]:
            audit.behind.append(key)
        elif got[0] > row[0]:
            audit.ahead.append(key)
        elif got != row:
            audit.torn.append(key)
    audit.extra = [k for k in target if k not in source]
    return audit


def wait_converged(
    check: Callable[[], Audit], stall: float = 150, limit: float = 1800, interval: float = 1.0
) -> float:
    """Seconds until ``check()`` is ok, waiting as long as the target keeps moving.

    A crash loop leaves a backlog that grows with its length (the long run's 200 kills leave
    minutes of load to replay), so a fixed timeout would fail a slow but converging daemon.
    Fails when nothing changed for ``stall`` seconds, or after ``limit``.
    """
    start = last_change = time.monotonic()
    seen: str | None = None
    while True:
        try:
            audit = check()
        except Exception:  # noqa: BLE001 - a server restarting, a table not created yet
            audit = None
        if audit is not None and audit.ok():
            return time.monotonic() - start
        now = time.monotonic()
        state = repr(asdict(audit)) if audit is not None else None
        if state != seen:
            seen, last_change = state, now
        if now - last_change > stall or now - start > limit:
            waited = f"{now - start:.0f}s, unchanged for {now - last_change:.0f}s"
            summary = audit.summary() if audit is not None else "check failed"
            raise AssertionError(f"not converged after {waited}: {summary}")
        time.sleep(interval)


def pg_rows(dsn: str, table: str, key: str, columns: list[str]) -> dict[object, tuple]:
    query = sql.SQL("SELECT {}, {} FROM {}").format(
        sql.Identifier(key), sql.SQL(", ").join(map(sql.SQL, columns)), sql.Identifier(table)
    )
    with psycopg.connect(dsn) as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}


# -- the apply audit: a trigger on the target table logs every write the engine makes --------


def row_changes(dsn: str, tables: Iterable[str]) -> int:
    """Rows inserted, updated and deleted in ``tables`` so far (the server's statistics:
    a backend reports its counts when its transaction ends, at most a second late)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
            "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(tables),),
        ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class CatchUp:
    """How fast a restarted daemon replayed what a load wrote while it was being killed: the
    load's row changes a second (``written`` over its seconds) against the changes the last
    daemon read a second from the load's end until the target converged (issue 17 asks for
    a catch-up at least as fast as the load was written)."""

    written: int
    load_seconds: float
    replayed: int
    seconds: float

    @property
    def write_rate(self) -> float:
        return self.written / self.load_seconds if self.load_seconds else 0.0

    @property
    def replay_rate(self) -> float:
        return self.replayed / self.seconds if self.seconds else 0.0

    def figures(self) -> dict[str, int]:
        return {
            "catch_up_seconds": round(self.seconds),
            "catch_up_replayed": self.replayed,
            "catch_up_per_s": round(self.replay_rate),
            "write_per_s": round(self.write_rate),
        }


def install_apply_audit(dsn: str, table: str, key: str, counter: str) -> None:
    """Log (key, op, old counter, new counter) of every row the engine writes to ``table``.

    With a per-row counter that the source increments on every update, and keys never
    reused, an exactly-once target shows: at most one INSERT per key, and every UPDATE moves
    the counter forward. A repeated counter is a change applied twice; a smaller one a stale
    change replayed over a newer one.
    """
    audit = f"{table}__apply_audit"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq bigserial PRIMARY KEY, k text, op text, "
                "old_counter bigint, new_counter bigint, at timestamptz DEFAULT clock_timestamp())"
            ).format(sql.Identifier(audit))
        )
        body = sql.SQL(
            "BEGIN "
            "IF TG_OP = 'DELETE' THEN INSERT INTO {audit} (k, op, old_counter) "
            "VALUES (OLD.{key}::text, 'D', OLD.{counter}); RETURN OLD; END IF; "
            "INSERT INTO {audit} (k, op, old_counter, new_counter) VALUES (NEW.{key}::text, "
            "left(TG_OP, 1), CASE WHEN TG_OP = 'UPDATE' THEN OLD.{counter} END, NEW.{counter}); "
            "RETURN NEW; END"
        ).format(
            audit=sql.Identifier(audit), key=sql.Identifier(key), counter=sql.Identifier(counter)
        )
        function = sql.Identifier(f"{table}__apply_audit_fn")
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}"
            ).format(function, sql.Literal(body.as_string(conn)))
        )
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{table}__apply_audit_tg"), sql.Identifier(table), function)
        )


@dataclass
class ApplyAudit:
    writes: int
    #: UPDATEs that did not move the counter forward (same version written again)
    repeated: int
    #: UPDATEs that moved the counter backwards (a stale change replayed)
    regressed: int
    #: keys inserted more than once (inserted, deleted, inserted again: a replayed insert)
    reinserted: int
    #: a few offending audit rows (key, op, old counter, new counter, time) for the report
    samples: list[tuple] = field(default_factory=list)

    @property
    def duplicated(self) -> int:
        return self.repeated + self.regressed + self.reinserted


def apply_audit(dsn: str, table: str) -> ApplyAudit:
    audit = sql.Identifier(f"{table}__apply_audit")
    with psycopg.connect(dsn) as conn:
        writes, repeated, regressed = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE op = 'U' AND new_counter = old_counter), "
                "count(*) FILTER (WHERE op = 'U' AND new_counter < old_counter) FROM {}"
            ).format(audit)
        ).fetchone()
        (reinserted,) = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT k FROM {} WHERE op = 'I' GROUP BY k "
                "HAVING count(*) > 1) x"
            ).format(audit)
        ).fetchone()
        samples = conn.execute(
            sql.SQL(
                "SELECT k, op, old_counter, new_counter, at::text FROM {} "
                "WHERE op = 'U' AND new_counter <= old_counter "
                "OR k IN (SELECT k FROM {} WHERE op = 'I' GROUP BY k HAVING count(*) > 1) "
                "ORDER BY seq LIMIT 12"
            ).format(audit, audit)
        ).fetchall()
    return ApplyAudit(writes, repeated, regressed, reinserted, samples)


def run_with_options(
    cli: CLI, options: list[str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``syncengine <options> <command> CONFIG <args>`` (``CLI.run`` has no root options)."""
    from tests.e2e.harness import EXE

    result = subprocess.run(
        [EXE, *options, args[0], str(cli.config), *args[1:]],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=timeout,
    )
    cli.logs.append(result.stdout + result.stderr)
    return result


def scan_for(secret: str, *texts: str) -> list[str]:
    """Lines of ``texts`` that contain ``secret`` (for the report when the assertion fails)."""
    return [line for text in texts for line in text.splitlines() if secret in line]


def state_files(state: Path) -> list[Path]:
    return [p for p in state.parent.glob(state.name + "*") if p.is_file()]
