"""Postgres → Postgres, in process: crash right after a commit, restart from the checkpoint
with smaller batches; the target never goes back to an older version of a row (F16).

Every commit carries the checkpoint of exactly the rows it holds, so the restarted stream
re-delivers nothing the target has. An apply-audit trigger on the target logs every write
(old and new ``counter``; the source bumps it on each update), as in the reliability suite.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import psycopg
import pytest

from syncengine.config.models import PipelineConfig
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import execute

TABLES = ("acct", "ledger")
AUDIT = """
CREATE TABLE audit (seq bigserial PRIMARY KEY, tbl text, k bigint, old_c int, new_c int);
CREATE FUNCTION audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  INSERT INTO audit (tbl, k, old_c, new_c) VALUES (TG_TABLE_NAME, NEW.id,
    CASE WHEN TG_OP = 'UPDATE' THEN OLD.counter END, NEW.counter);
  RETURN NEW;
END $$;
"""


class Crash(Exception):
    pass


def pipeline(src: str, tgt: str, max_rows: int) -> Pipeline:
    config = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": src, "tables": list(TABLES), "heartbeat": 0},
            "target": {"type": "postgres", "dsn": tgt},
            "batch": {"max_rows": max_rows, "max_wait": 30},  # cuts by max_rows only
        }
    )
    return Pipeline("replay", config, SQLiteStateStore(":memory:"))


def load(dsn: str, seed: int, txns: int = 40) -> None:
    """Transactions over few keys: keys change often, also twice in one transaction."""
    rng = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        known = {(t, r[0]) for t in TABLES for r in conn.execute(f"SELECT id FROM {t}")}
        for _ in range(txns):
            with conn.transaction():
                for _ in range(rng.choice([1, 1, 2, 3, 6])):
                    table, key = rng.choice(["acct", "acct", "ledger"]), rng.randrange(4)
                    if (table, key) in known:
                        conn.execute(
                            f"UPDATE {table} SET counter = counter + 1 WHERE id = %s", (key,)
                        )
                    else:
                        conn.execute(f"INSERT INTO {table} VALUES (%s, 0)", (key,))
                        known.add((table, key))


async def life(
    src: str, tgt: str, max_rows: int, committed: Counter[str], crash_after: int | None = None
) -> bool:
    """One daemon life up to the source's current position; False when it crashed.
    ``committed`` counts the source positions of the changes each commit held."""
    p = pipeline(src, tgt, max_rows)
    await p.open()
    commits = 0
    original = p.commit

    async def commit(prepared):
        nonlocal commits
        report = await original(prepared)
        for batch in prepared.batches:
            committed.update(batch.data.column("_pos").to_pylist())
        commits += 1
        if crash_after is not None and commits >= crash_after:
            raise Crash  # committed, never acknowledged: like a SIGKILL right after COMMIT
        return report

    p.commit = commit  # type: ignore[method-assign]
    try:
        start, _ = await runner.ensure_backfilled(p)
        until = await p.source.current_position()
        await runner.stream(p, start, until)
        return True
    except Crash:
        return False
    finally:
        await p.close()


@pytest.mark.integration
@pytest.mark.parametrize(("first", "second"), [(4, 1), (6, 2)])
def test_restart_after_a_commit_never_writes_an_older_version(pg_dsn, pg_target_dsn, first, second):
    for table in TABLES:
        execute(pg_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, counter int NOT NULL)")
        execute(
            pg_target_dsn, f"CREATE TABLE {table} (id bigint PRIMARY KEY, counter int NOT NULL)"
        )
    execute(pg_target_dsn, AUDIT)
    for table in TABLES:
        execute(
            pg_target_dsn,
            f"CREATE TRIGGER {table}_audit AFTER INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_fn()",
        )

    committed: Counter[str] = Counter()

    async def scenario() -> None:
        # backfill (of empty tables): slot, checkpoint
        assert await life(pg_dsn, pg_target_dsn, first, committed)
        for crash_after in range(1, 7):
            # more commits than crash_after, also in groups grown under the backlog
            load(pg_dsn, seed=crash_after * 100 + first, txns=120)
            assert not await life(pg_dsn, pg_target_dsn, first, committed, crash_after)
            assert await life(pg_dsn, pg_target_dsn, second, committed)

    asyncio.run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        stale = conn.execute(
            "SELECT tbl, k, old_c, new_c FROM audit WHERE new_c <= old_c ORDER BY seq"
        ).fetchall()
        target = {
            t: conn.execute(f"SELECT id, counter FROM {t} ORDER BY id").fetchall() for t in TABLES
        }
    with psycopg.connect(pg_dsn) as conn:
        source = {
            t: conn.execute(f"SELECT id, counter FROM {t} ORDER BY id").fetchall() for t in TABLES
        }
    assert target == source
    assert not stale, f"writes that did not move a row's counter forward: {stale[:10]}"
    # the restart re-delivers nothing a commit held: not even the transaction that ends
    # exactly at the checkpoint (Postgres skips a commit record that starts before the
    # requested LSN)
    twice = sorted(pos for pos, n in committed.items() if n > 1)
    assert not twice, f"changes committed twice: {twice[:10]}"
