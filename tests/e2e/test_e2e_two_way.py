"""Two-way Postgres ↔ Postgres through the real CLI: each side's change reaches the other once,
the engine's own writes never come back (replication origins), conflicts converge."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      orders:
        two_way: true
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.items]
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, stamp timestamptz)"
SNAPSHOT = "SELECT id, name, qty FROM items ORDER BY id"


def make_cli(tmp_path, src: str, tgt: str, conflicts: str = "{prefer: source}") -> CLI:
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    return CLI(tmp_path, config, {"SRC_DSN": src, "TGT_DSN": tgt})


@pytest.fixture
def sides(pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        TABLE,
        "INSERT INTO items SELECT i, 'n' || i, i, now() FROM generate_series(1, 50) i",
    )
    execute(pg_target_dsn, TABLE)
    return pg_dsn, pg_target_dsn


def applied(result) -> dict[str, int]:
    """``name: N change(s) applied`` lines of ``sync --once`` by direction."""
    return {
        m[1]: int(m[2])
        for m in re.finditer(r"^(\S+): (\d+) change\(s\) applied", result.stdout, re.M)
    }


def test_each_side_reaches_the_other_once_and_nothing_comes_back(tmp_path, sides):
    src, tgt = sides
    cli = make_cli(tmp_path, src, tgt)
    cli.run("sync", "--once")
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    execute(
        src, "UPDATE items SET name = 'from source' WHERE id = 1", "DELETE FROM items WHERE id = 2"
    )
    execute(
        tgt,
        "UPDATE items SET name = 'from target' WHERE id = 3",
        "INSERT INTO items VALUES (99, 't', 9, now())",
    )
    first = applied(cli.run("sync", "--once"))
    assert first == {"orders": 2, "orders.reverse": 2}, first
    assert rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)
    assert rows(src, "SELECT name FROM items WHERE id IN (1, 3) ORDER BY id") == [
        ("from source",),
        ("from target",),
    ]
    # the engine's writes carry its replication origins: the readers drop them, nothing echoes
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == {"orders": 0, "orders.reverse": 0}, again
    origins = rows(src, "SELECT external_id FROM pg_replication_origin_status ORDER BY 1")
    assert ("syncengine_orders_reverse",) in origins
