"""Poison rows go to dead letters, with a reason and the payload, while the rest continues.

Poison kinds: a mapping cast that fails (``CAST(code AS integer)`` on ``'abc'``), a CHECK
constraint and a UNIQUE index added by hand on the target, and a value too big for the
target (see test_rel_hostile_values). After the poison, later changes of good rows, and of the
poisoned rows once fixed at the source, still arrive. ``on_error: fail`` stops instead.
"""

from __future__ import annotations

import json
import textwrap

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.reliability.rel_support import Daemon, record

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      poison:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items, public.codes]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        mappings:
          - source: public.codes
            target: codes
            key: [id]
            fields: {id: id, code: "CAST(code AS INTEGER)", label: label}
        batch: {max_rows: 200, max_wait: 100ms}
        on_error: ${ON_ERROR}
    """
)
GOOD_CODES = "SELECT id, code::int, label FROM codes WHERE code ~ '^[0-9]+$' ORDER BY id"
TARGET_CODES = "SELECT id, code, label FROM codes ORDER BY id"


def setup(src: str, tgt: str) -> None:
    execute(
        src,
        "CREATE TABLE items (id int PRIMARY KEY, qty int, email text)",
        "CREATE TABLE codes (id int PRIMARY KEY, code text, label text)",
        "INSERT INTO items SELECT i, i % 50, 'u' || i || '@x' FROM generate_series(1, 500) i",
        "INSERT INTO codes SELECT i, CASE WHEN i % 25 = 0 THEN 'abc' || i ELSE i::text END, "
        "'l' || i FROM generate_series(1, 500) i",
    )
    # Hand-made target table with rules the source does not have.
    execute(
        tgt,
        "CREATE TABLE items (id int PRIMARY KEY, qty int CHECK (qty < 45), email text UNIQUE)",
    )


def letters(cli: CLI) -> list[dict]:
    result = cli.run("deadletters", "list", "--json")
    return json.loads(result.stdout)


def test_poison_rows_dead_letter_and_the_rest_continues(tmp_path, pg_dsn, pg_target_dsn):
    setup(pg_dsn, pg_target_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "ON_ERROR": "dead_letter"}
    cli = CLI(tmp_path, CONFIG, env)
    daemon = Daemon(cli).start()
    try:
        try:
            wait_for(lambda: rows(pg_target_dsn, TARGET_CODES) == rows(pg_dsn, GOOD_CODES), 90)
        except AssertionError:
            raise AssertionError(f"good codes did not arrive:\n{daemon.tail()}") from None
        good_items = "SELECT id, qty, email FROM items WHERE qty < 45 ORDER BY id"
        wait_for(lambda: rows(pg_target_dsn, good_items) == rows(pg_dsn, good_items), 60)
        # a duplicate email on the target's UNIQUE index; then life goes on
        execute(
            pg_dsn,
            "UPDATE items SET email = 'u1@x' WHERE id = 2",
            "UPDATE items SET qty = 1 WHERE id = 3",
            "UPDATE codes SET code = '7' WHERE id = 25",  # a poisoned row fixed at the source
            "INSERT INTO items VALUES (1000, 2, 'late@x')",
        )
        wait_for(lambda: rows(pg_target_dsn, "SELECT qty FROM items WHERE id = 1000") == [(2,)])
        wait_for(lambda: rows(pg_target_dsn, "SELECT code FROM codes WHERE id = 25") == [(7,)])
        assert daemon.alive(), daemon.tail()
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert rows(pg_target_dsn, "SELECT qty FROM items WHERE id = 3") == [(1,)]
    assert rows(pg_target_dsn, "SELECT email FROM items WHERE id = 2") == [("u2@x",)]
    found = letters(cli)
    by_table: dict[str, list[dict]] = {}
    for letter in found:
        assert letter["reason"], letter
        by_table.setdefault(letter["table"].split(".")[-1], []).append(letter)
    cast_failed = {json.dumps(x["payload"]) for x in by_table.get("codes", [])}
    assert len(by_table.get("codes", [])) >= 20, f"20 bad codes, dead letters: {found[:3]}"
    assert all("abc" in p for p in cast_failed), cast_failed
    item_letters = by_table.get("items", [])
    qty_rows = [x for x in item_letters if "check" in x["reason"].lower()]
    assert len(qty_rows) >= 50, f"50 CHECK violations expected: {item_letters[:3]}"
    unique = [
        x
        for x in item_letters
        if "unique" in x["reason"].lower() or "duplicate" in x["reason"].lower()
    ]
    assert unique and "u1@x" in json.dumps(unique[0]["payload"]), item_letters[-3:]
    status = json.loads(cli.run("status", "--json").stdout)
    assert status[0]["dead_letters"] >= len(found) - 0, status
    record("poison_rows", inputs=len(found))


def test_on_error_fail_stops_with_exit_1(tmp_path, pg_dsn, pg_target_dsn):
    setup(pg_dsn, pg_target_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "ON_ERROR": "fail"}
    cli = CLI(tmp_path, CONFIG, env)
    result = cli.run("sync", "--once", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out and "dead" in out.lower(), out
