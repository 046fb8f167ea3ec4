"""A target whose tables carry the source's foreign keys (a replica made with ``pg_dump
--schema-only``, as many are). A group is applied table by table: a key checked at each
statement refuses a parent deleted before its children are (they are in the same group, one
source transaction), and those changes go to dead letters. ``validate`` names each such key
with the fix; made ``DEFERRABLE INITIALLY DEFERRED`` it is checked at the group's commit and
every change arrives."""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.orders, public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
DDL = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, note text)",
    "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint NOT NULL "
    "CONSTRAINT items_order REFERENCES orders(id){}, qty int)",
)


def _ddl(deferred: bool) -> tuple[str, ...]:
    return (DDL[0], DDL[1].format(" DEFERRABLE INITIALLY DEFERRED" if deferred else ""))


@pytest.mark.parametrize("deferred", [False, True])
def test_foreign_keys_at_the_target(tmp_path, pg_dsn, pg_target_dsn, deferred):
    execute(
        pg_dsn,
        *_ddl(False),
        "INSERT INTO orders SELECT i, 'a' FROM generate_series(1, 100) i",
        "INSERT INTO items SELECT i, i % 100 + 1, i FROM generate_series(1, 300) i",
    )
    execute(pg_target_dsn, *_ddl(deferred))
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    noted = "foreign key items_order of items references orders" in cli.run("validate").stdout
    assert noted is not deferred
    cli.run("sync", "--once")
    # one source transaction each: children before their parent, as the source requires
    execute(pg_dsn, "BEGIN", "DELETE FROM items WHERE order_id <= 10",
            "DELETE FROM orders WHERE id <= 10", "COMMIT")  # fmt: skip
    execute(pg_dsn, "BEGIN", "INSERT INTO orders SELECT i, 'n' FROM generate_series(101, 120) i",
            "INSERT INTO items SELECT i, i % 20 + 101, i FROM generate_series(301, 400) i",
            "COMMIT")  # fmt: skip
    cli.run("sync", "--once")
    letters = cli.run("deadletters", "list").stdout
    same = all(
        rows(pg_target_dsn, f"SELECT * FROM {t} ORDER BY id")
        == rows(pg_dsn, f"SELECT * FROM {t} ORDER BY id")
        for t in ("orders", "items")
    )
    if deferred:
        assert same and "violates foreign key" not in letters, letters
    else:  # the limitation validate warned of: refused, never lost silently
        assert "violates foreign key constraint" in letters
