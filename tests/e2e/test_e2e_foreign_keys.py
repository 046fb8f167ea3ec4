"""A target whose tables carry the source's foreign keys, checked at each statement or at the
commit. A group holds whole source transactions whose statements the source ordered for its
keys; applied table by table in the config's order, a parent deleted with its children was
refused while they were still there, a parent moved away from by an update too, and children
inserted with their new parent before it (dead letters, and a target that kept rows the
source deleted). The Postgres target orders them (``targets/postgres/fkorder.py``): every
change arrives, whichever order the tables are listed in. A backfill's chunks commit one by
one, two at once: ``validate`` says to create such keys after the first backfill."""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [TABLES]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
TABLES = ("orders", "items", "notes")


def _ddl(checked: str | None) -> tuple[str, ...]:
    """The tables, with their foreign keys (``checked`` how) or without (None)."""
    tables = (
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text)",
        "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint NOT NULL, qty int)",
        # a grandchild, and a key of its own table
        "CREATE TABLE notes (id bigint PRIMARY KEY, item_id bigint, reply_to bigint, body text)",
    )
    if checked is None:
        return tables
    return (*tables, *_keys(checked))


def _keys(checked: str) -> tuple[str, ...]:
    return (
        f"ALTER TABLE items ADD CONSTRAINT items_order FOREIGN KEY (order_id) "
        f"REFERENCES orders(id) {checked}",
        f"ALTER TABLE notes ADD CONSTRAINT notes_item FOREIGN KEY (item_id) "
        f"REFERENCES items(id) {checked}",
        "ALTER TABLE notes ADD CONSTRAINT notes_reply FOREIGN KEY (reply_to) REFERENCES notes(id)",
    )


def _same(src: str, tgt: str) -> bool:
    return all(
        rows(src, f"SELECT * FROM {t} ORDER BY id") == rows(tgt, f"SELECT * FROM {t} ORDER BY id")
        for t in TABLES
    )


@pytest.mark.parametrize(
    ("checked", "listed"),
    [
        ("NOT DEFERRABLE", "public.orders, public.items, public.notes"),
        ("NOT DEFERRABLE", "public.notes, public.items, public.orders"),
        ("DEFERRABLE INITIALLY DEFERRED", "public.notes, public.items, public.orders"),
    ],
)
def test_the_stream_applies_what_the_targets_foreign_keys_allow(
    tmp_path, pg_dsn, pg_target_dsn, checked, listed
):
    execute(
        pg_dsn,
        *_ddl("NOT DEFERRABLE"),
        "INSERT INTO orders SELECT i, 'a' FROM generate_series(1, 100) i",
        "INSERT INTO items SELECT i, i % 100 + 1, i FROM generate_series(1, 300) i",
        "INSERT INTO notes SELECT i, i, NULL, 'n' FROM generate_series(1, 300) i",
        "UPDATE notes SET reply_to = id - 1 WHERE id % 100 BETWEEN 51 AND 99",
    )
    execute(pg_target_dsn, *_ddl(None))
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, CONFIG.replace("TABLES", listed), env)
    cli.run("sync", "--once")
    execute(pg_target_dsn, *_keys(checked))  # after the first backfill, as validate says
    # each a source transaction, its statements in the order the source's keys need
    execute(pg_dsn, "BEGIN", "DELETE FROM notes WHERE item_id IN (SELECT id FROM items "
            "WHERE order_id <= 10)", "DELETE FROM items WHERE order_id <= 10",
            "DELETE FROM orders WHERE id <= 10", "COMMIT")  # fmt: skip
    execute(pg_dsn, "BEGIN", "INSERT INTO orders SELECT i, 'n' FROM generate_series(101, 120) i",
            "INSERT INTO items SELECT i, i % 20 + 101, i FROM generate_series(301, 400) i",
            "INSERT INTO notes SELECT i, i, NULL, 'new' FROM generate_series(301, 400) i",
            "COMMIT")  # fmt: skip
    # children moved to another parent, the old parent deleted; a new parent and a new child
    # beside an updated one, all at once
    execute(pg_dsn, "BEGIN", "UPDATE items SET order_id = 50 WHERE order_id = 40",
            "DELETE FROM orders WHERE id = 40", "INSERT INTO orders VALUES (500, 'x')",
            "INSERT INTO items VALUES (900, 500, 1)", "UPDATE orders SET note = 'u' WHERE id = 60",
            "COMMIT")  # fmt: skip
    cli.run("sync", "--once")
    assert "violates foreign key" not in cli.run("deadletters", "list").stdout
    assert _same(pg_dsn, pg_target_dsn)
    assert cli.run("verify").returncode == 0


def test_validate_notes_the_keys_a_backfill_may_meet_out_of_order(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, *_ddl("NOT DEFERRABLE"))
    execute(pg_target_dsn, *_ddl("DEFERRABLE INITIALLY DEFERRED"))
    listed = "public.orders, public.items, public.notes"
    cli = CLI(
        tmp_path, CONFIG.replace("TABLES", listed), {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    )
    out = cli.run("validate").stdout
    assert (
        "note: pipelines.replica.target: foreign key items_order of items references orders" in out
    )
    assert "foreign key notes_item of notes references items" in out
    assert "notes_reply" not in out  # a table's key to itself: within one chunk's statement
