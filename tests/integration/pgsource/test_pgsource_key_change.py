"""Key-changing updates from a real slot: a delete of the old key, then the new key's row with
every value, also an unchanged TOASTed one (from the old row under REPLICA IDENTITY FULL, read
back from the source under DEFAULT, left unsent when the row is gone)."""

from __future__ import annotations

import pytest

from tests.integration.pgsource.pgsource_helpers import (  # noqa: F401 - fixture
    both_decode_modes,
    changes_after,
    rows,
)

pytestmark = pytest.mark.usefixtures("both_decode_modes")

BIG = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g)"


def test_key_change_keeps_unchanged_toast_under_full_and_default(pg_dsn):
    batches = changes_after(
        pg_dsn,
        ["kd", "kf"],
        (
            "CREATE TABLE kd (id int PRIMARY KEY, a text, big text)",
            "CREATE TABLE kf (id int PRIMARY KEY, a text, big text)",
            "ALTER TABLE kf REPLICA IDENTITY FULL",
        ),
        (
            f"INSERT INTO kd VALUES (1, 'x', {BIG})",
            f"INSERT INTO kf VALUES (1, 'x', {BIG})",
            "UPDATE kd SET id = 2 WHERE id = 1",
            "UPDATE kf SET id = 2 WHERE id = 1",
        ),
    )
    full = rows(batches, "public.kf")
    big = full[0]["big"]
    assert len(big) == 128000
    assert [(r["_op"], r["id"]) for r in full] == [("c", 1), ("d", 1), ("u", 2)]
    assert full[2]["big"] == big and not full[2].get("_unsent.big")  # taken from the old row
    # DEFAULT: Postgres sends neither the value (unchanged TOAST) nor the old row: the reader
    # reads it back from the source by the new key (syncengine.sources.postgres.moved)
    default = rows(batches, "public.kd")
    assert [(r["_op"], r["id"]) for r in default] == [("c", 1), ("d", 1), ("u", 2)]
    assert default[2]["big"] == default[0]["big"] and len(default[0]["big"]) == 128000
    assert not default[2]["_unsent.big"] and default[2]["a"] == "x"


def test_key_changed_row_gone_from_the_source_stays_unsent(pg_dsn):
    batches = changes_after(
        pg_dsn,
        ["kg"],
        ("CREATE TABLE kg (id int PRIMARY KEY, big text, tags int[])",),
        (
            f"INSERT INTO kg VALUES (1, {BIG}, '{{1,2}}'), (5, {BIG}, NULL)",
            "UPDATE kg SET id = 2 WHERE id = 1",
            "UPDATE kg SET id = 6 WHERE id = 5",
            "DELETE FROM kg WHERE id = 6",
        ),
    )
    got = rows(batches, "public.kg")
    assert [(r["_op"], r["id"]) for r in got] == [
        ("c", 1),
        ("c", 5),
        ("d", 1),
        ("u", 2),
        ("d", 5),
        ("u", 6),
        ("d", 6),
    ]
    assert got[3]["big"] == got[0]["big"] and not got[3]["_unsent.big"]
    assert got[3]["tags"] == [1, 2]  # a sent value is left as it was
    assert got[5]["_unsent.big"] and got[5]["big"] is None  # gone: unsent, and deleted next
