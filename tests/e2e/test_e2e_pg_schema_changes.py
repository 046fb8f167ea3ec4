"""A Postgres source's ALTER TABLE mid-stream, through the real CLI into a Postgres target:
a column's type change is followed where the old type would round or refuse the new values,
and a column added with a default gives the rows that existed its value at the target too
(the source stores it as the column's missing value; no change of those rows is in the WAL).
"""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}", on_schema_change: "${ON_CHANGE}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SEED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, qty int, price numeric(10,2), "
    "code varchar(5), seen timestamptz(0))",
    "INSERT INTO items SELECT i, i, i * 1.25, 'c' || i, '2026-01-02 03:04:05+00' "
    "FROM generate_series(1, 300) i",
)
ALL = "SELECT * FROM items ORDER BY id"
TYPES = (
    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "WHERE a.attrelid = 'items'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)


def cli_for(
    tmp_path,
    pg_dsn,
    pg_target_dsn,
    on_change: str = "add",
    seed: tuple[str, ...] = SEED,
    strategy: str | None = None,
) -> CLI:
    """The source seeded with ``seed``, a pipeline into the target (``strategy``: its
    conflicts strategy, remote when None)."""
    execute(pg_dsn, *seed)
    config = CONFIG
    if strategy is not None:
        config = CONFIG.replace(
            "    batch:", f"    conflicts: {{strategy: {strategy}}}\n    batch:"
        )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "ON_CHANGE": on_change}
    return CLI(tmp_path, config, env)


def test_type_changes_are_followed_without_rounding(tmp_path, pg_dsn, pg_target_dsn):
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE items SET qty = 0, price = 0.5 WHERE id = 1",  # read in the old shape
        "ALTER TABLE items ALTER COLUMN qty TYPE bigint",
        "ALTER TABLE items ALTER COLUMN price TYPE numeric(20,4)",
        "ALTER TABLE items ALTER COLUMN code TYPE text",
        "ALTER TABLE items ALTER COLUMN seen TYPE timestamptz",
        "UPDATE items SET qty = 5000000000, price = 1.2345, code = 'longer than five', "
        "seen = '2026-01-02 03:04:05.123456+00' WHERE id = 2",
        "INSERT INTO items VALUES (301, 6000000000, 0.0001, 'another long one', "
        "'2026-01-02 03:04:05.5+00')",
    )
    result = cli.run("sync", "--once")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)
    assert rows(pg_target_dsn, TYPES) == rows(pg_dsn, TYPES)
    assert rows(pg_target_dsn, "SELECT price FROM items WHERE id = 2") == [(Decimal("1.2345"),)]
    assert "dead letter" not in result.stderr
    assert "the column becomes numeric(20,4)" in result.stderr


def test_a_change_that_keeps_the_arrow_type_is_followed(tmp_path, pg_dsn, pg_target_dsn):
    """``timestamptz(0)`` → ``timestamptz`` arrives as the same Arrow type; only the declared
    type says the target must change (it would round the microseconds away). The drain
    meets the table's old shape first, as a running daemon would."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE items SET qty = 0 WHERE id = 1",
        "ALTER TABLE items ALTER COLUMN seen TYPE timestamptz",
        "UPDATE items SET seen = '2026-01-02 03:04:05.123456+00' WHERE id = 2",
    )
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)
    assert ("seen", "timestamp with time zone") in rows(pg_target_dsn, TYPES)


def test_a_wider_target_column_is_left_as_it_is(tmp_path, pg_dsn, pg_target_dsn):
    """A user's ``text`` column for an integer source holds every value: never narrowed,
    never changed."""
    execute(pg_target_dsn, "CREATE TABLE items (id bigint PRIMARY KEY, qty text, price numeric, "
            "code text, seen timestamptz)")  # fmt: skip
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(pg_dsn, "ALTER TABLE items ALTER COLUMN qty TYPE bigint",
            "UPDATE items SET qty = 5000000000 WHERE id = 2")  # fmt: skip
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, TYPES) == [
        ("id", "bigint"), ("qty", "text"), ("price", "numeric"), ("code", "text"),
        ("seen", "timestamp with time zone"),
    ]  # fmt: skip
    assert rows(pg_target_dsn, "SELECT qty FROM items WHERE id = 2") == [("5000000000",)]


def test_type_changes_are_not_followed_unless_columns_are_added(tmp_path, pg_dsn, pg_target_dsn):
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, on_change="ignore")
    cli.run("sync", "--once")
    execute(pg_dsn, "ALTER TABLE items ALTER COLUMN price TYPE numeric(20,4)")
    cli.run("sync", "--once")
    assert ("price", "numeric(10,2)") in rows(pg_target_dsn, TYPES)


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        ("d int NOT NULL DEFAULT 5", 5),
        ("d text DEFAULT 'it''s {x}, \"quoted\"'", 'it\'s {x}, "quoted"'),
        ("d int[] DEFAULT '{1,2}'", [1, 2]),
        ('d jsonb DEFAULT \'{"a": [1, "b"]}\'', {"a": [1, "b"]}),
        ("d numeric(6,3) DEFAULT 1.5", Decimal("1.500")),
    ],
)
def test_a_column_added_with_a_default_has_it_in_the_rows_that_existed(
    tmp_path, pg_dsn, pg_target_dsn, column, stored
):
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "INSERT INTO items (id, qty) VALUES (400, 1)",  # before the column, in the same drain
        f"ALTER TABLE items ADD COLUMN {column}",
        "UPDATE items SET qty = 7 WHERE id = 2",
        "INSERT INTO items (id, qty) VALUES (401, 1)",
    )
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)
    assert rows(pg_target_dsn, "SELECT DISTINCT d FROM items") == [(stored,)]


def test_a_volatile_default_is_named_in_a_warning(tmp_path, pg_dsn, pg_target_dsn):
    """``clock_timestamp()`` rewrites the source table: the rows that existed got values no
    change in the WAL carries. The target cannot know them; it says so."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "ALTER TABLE items ADD COLUMN d timestamptz DEFAULT clock_timestamp()",
        "INSERT INTO items (id, qty) VALUES (401, 1)",
    )
    result = cli.run("sync", "--once")
    assert "items.d: the source's column has a default but no value stored" in result.stderr
    assert "resnapshot" in result.stderr
    assert rows(pg_target_dsn, "SELECT count(*) FROM items WHERE d IS NULL") == [(300,)]
    assert rows(pg_target_dsn, "SELECT d IS NOT NULL FROM items WHERE id = 401") == [(True,)]


GENERATED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, qty int, price numeric(10,2), "
    "total numeric GENERATED ALWAYS AS (qty * price) STORED, "
    "words tsvector GENERATED ALWAYS AS (to_tsvector('simple', 'item ' || id)) STORED)",
    "INSERT INTO items (id, qty, price) SELECT i, i, 1.5 FROM generate_series(1, 3000) i",
)
GENERATED_ALL = "SELECT id, qty, price, total, words::text FROM items ORDER BY id"


def test_generated_columns_are_generated_at_the_target(tmp_path, pg_dsn, pg_target_dsn):
    """Postgres before 18 never sends a generated column's values in the stream: a target
    column holding the snapshot's values went stale at the first update (and was NULL in
    every row inserted later). The target generates it as the source does."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=GENERATED)
    backfill = cli.run("sync", "--once")
    assert "not passed through" not in backfill.stderr  # the binary copy leaves them out
    execute(
        pg_dsn,
        "UPDATE items SET qty = 100 WHERE id = 2",
        "INSERT INTO items (id, qty, price) VALUES (5000, 2, 2)",
        "DELETE FROM items WHERE id = 3",
    )
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, GENERATED_ALL) == rows(pg_dsn, GENERATED_ALL)
    assert rows(pg_target_dsn, "SELECT total FROM items WHERE id IN (2, 5000) ORDER BY id") == [
        (Decimal("150.00"),),
        (Decimal("4.00"),),
    ]
    generated = (
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'items'::regclass "
        "AND attgenerated <> '' ORDER BY attnum"
    )
    assert rows(pg_target_dsn, generated) == [("total",), ("words",)]


def test_a_plain_target_column_for_a_generated_one_is_named(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_target_dsn, "CREATE TABLE items (id bigint PRIMARY KEY, qty int, "
            "price numeric(10,2), total numeric, words tsvector)")  # fmt: skip
    result = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=GENERATED).run("sync", "--once")
    assert "items: total, words generated at the source but not here" in result.stderr
    assert "generated at the source only" in result.stderr  # decoded, not passed through
    # never written: a snapshot's values would go stale at the first update
    assert rows(pg_target_dsn, "SELECT count(*) FROM items WHERE total IS NULL") == [(3000,)]
    same = "SELECT id, qty, price FROM items ORDER BY id"
    assert rows(pg_target_dsn, same) == rows(pg_dsn, same)


ENUM = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok')",
    "CREATE TABLE items (id bigint PRIMARY KEY, qty int, m mood, ms mood[])",
    "INSERT INTO items SELECT i, i, 'ok', '{sad,ok}' FROM generate_series(1, 100) i",
)
MOODS = "SELECT id, m::text, ms::text FROM items ORDER BY id"


def enum_cli(tmp_path, pg_dsn, pg_target_dsn) -> CLI:
    return cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=ENUM)


def test_an_enum_label_added_between_runs_reaches_the_target(tmp_path, pg_dsn, pg_target_dsn):
    """The target's copy of the type gains the label; before, every row using it was
    refused (dead letters)."""
    cli = enum_cli(tmp_path, pg_dsn, pg_target_dsn)
    cli.run("sync", "--once")
    execute(pg_dsn, "ALTER TYPE mood ADD VALUE 'happy'")
    execute(pg_dsn, "UPDATE items SET m = 'happy' WHERE id = 2",
            "INSERT INTO items VALUES (101, 1, 'happy', '{happy}')")  # fmt: skip
    result = cli.run("sync", "--once")
    assert "dead letter" not in result.stderr
    assert rows(pg_target_dsn, MOODS) == rows(pg_dsn, MOODS)


def test_an_enum_label_added_while_the_daemon_runs_reaches_the_target(
    tmp_path, pg_dsn, pg_target_dsn
):
    """No Relation or Type message follows ``ALTER TYPE … ADD VALUE``: the reader sees a
    label its definition lacks and reads the definition again."""
    cli = enum_cli(tmp_path, pg_dsn, pg_target_dsn)
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(pg_target_dsn, MOODS) == rows(pg_dsn, MOODS), timeout=60)
        execute(pg_dsn, "UPDATE items SET qty = 0 WHERE id = 1")  # the old definition in use
        wait_for(lambda: rows(pg_target_dsn, MOODS) == rows(pg_dsn, MOODS), timeout=60)
        execute(pg_dsn, "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'sad'")
        execute(pg_dsn, "UPDATE items SET ms = '{ok,happy}' WHERE id = 3",
                "UPDATE items SET m = 'happy' WHERE id = 2")  # fmt: skip
        wait_for(lambda: rows(pg_target_dsn, MOODS) == rows(pg_dsn, MOODS), timeout=60)
    finally:
        assert cli.stop(daemon) == 0
    assert "dead letter" not in cli.daemon_logs()
    assert "type mood gains the label 'happy'" in cli.daemon_logs()


@pytest.mark.parametrize("strategy", ["local", "manual"])
def test_generated_columns_under_a_detecting_strategy(tmp_path, pg_dsn, pg_target_dsn, strategy):
    """The snapshot's rows held the generated values, the stream's never do: hashed, a
    key's shadow row and its next change never agreed, and ``local`` kept the target's row
    (the source's update lost) while ``manual`` parked it."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=GENERATED, strategy=strategy)
    cli.run("sync", "--once")
    for qty in (100, 101):
        execute(pg_dsn, f"UPDATE items SET qty = {qty} WHERE id = 2")
        cli.run("sync", "--once")
    assert rows(pg_target_dsn, GENERATED_ALL) == rows(pg_dsn, GENERATED_ALL)


@pytest.mark.parametrize("strategy", ["local", "manual"])
def test_an_added_default_under_a_detecting_strategy(tmp_path, pg_dsn, pg_target_dsn, strategy):
    """The shadow rows never saw the default's value: filled in at the target, the next change
    of every older row would be a conflict (``local`` would drop it). The older rows keep
    NULL there, with a warning, and every change arrives."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=SEED, strategy=strategy)
    cli.run("sync", "--once")
    execute(pg_dsn, "ALTER TABLE items ADD COLUMN d int NOT NULL DEFAULT 5",
            "UPDATE items SET qty = 7 WHERE id = 2")  # fmt: skip
    result = cli.run("sync", "--once")
    assert (
        f"items.d was added at the source with a default; under conflicts strategy {strategy}"
        in result.stderr
    )
    execute(pg_dsn, "UPDATE items SET qty = 8 WHERE id IN (2, 3)")
    cli.run("sync", "--once")
    same = "SELECT id, qty, price FROM items ORDER BY id"
    assert rows(pg_target_dsn, same) == rows(pg_dsn, same)
    assert rows(pg_target_dsn, "SELECT d FROM items WHERE id IN (1, 2) ORDER BY id") == [
        (None,),
        (5,),
    ]


@pytest.mark.parametrize("strategy", ["local", "manual"])
@pytest.mark.parametrize(
    "alter",
    ["price TYPE numeric(20,4)", "qty TYPE bigint", "code TYPE text", "seen TYPE timestamptz"],
)
def test_a_type_change_under_a_detecting_strategy(tmp_path, pg_dsn, pg_target_dsn, strategy, alter):
    """The shadow rows hashed 2.50; after ``numeric(10,2)`` → ``numeric(20,4)`` the source sends
    2.5000 and the target reads 2.5000 back: decimals hash by value (as ints and doubles do),
    or the next change of every row would have been a conflict (``local`` dropped it)."""
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=SEED, strategy=strategy)
    cli.run("sync", "--once")
    execute(pg_dsn, f"ALTER TABLE items ALTER COLUMN {alter}",
            "UPDATE items SET code = 'x' WHERE id = 2")  # fmt: skip
    cli.run("sync", "--once")
    execute(pg_dsn, "UPDATE items SET code = 'y' WHERE id IN (2, 3)")
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)


TO_MONGO = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)


def test_generated_columns_are_not_written_to_mongo(tmp_path, pg_dsn, mongo_uri, mongo_db):
    """A Mongo target cannot compute them, and the stream never carries them: the snapshot's
    values would go stale. They are left out, said so, and ``verify`` does not count them."""
    from pymongo import MongoClient

    execute(pg_dsn, *GENERATED)
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, TO_MONGO, env)
    result = cli.run("sync", "--once")
    assert "items: total, words generated at the source" in result.stderr
    execute(pg_dsn, "UPDATE items SET qty = 100 WHERE id = 2")
    cli.run("sync", "--once")
    with MongoClient(mongo_uri) as client:
        docs = list(client[mongo_db]["items"].find({}, {"_id": 1, "qty": 1, "total": 1}))
    assert len(docs) == 3000
    assert not [d for d in docs if "total" in d]
    assert next(d for d in docs if d["_id"] == 2)["qty"] == 100
    verified = cli.run("verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_keyless_table_matches_its_older_rows_after_a_default_is_added(
    tmp_path, pg_dsn, pg_target_dsn
):
    """A keyless table's rows are matched by their whole old image, which after
    ``ADD COLUMN d … DEFAULT 5`` holds d = 5 for the rows that existed. With NULL there at the
    target (before session 32) a delete of such a row missed it and an update added a second
    row beside the old one."""
    keyless = (
        "CREATE TABLE items (id bigint, qty int)",
        "ALTER TABLE items REPLICA IDENTITY FULL",
        "INSERT INTO items SELECT i, i FROM generate_series(1, 10) i",
    )
    cli = cli_for(tmp_path, pg_dsn, pg_target_dsn, seed=keyless)
    cli.run("sync", "--once")
    execute(pg_dsn, "ALTER TABLE items ADD COLUMN d int NOT NULL DEFAULT 5")
    execute(pg_dsn, "DELETE FROM items WHERE id = 4", "UPDATE items SET qty = 70 WHERE id = 5")
    cli.run("sync", "--once")
    everything = "SELECT id, qty, d FROM items ORDER BY id, qty"
    assert rows(pg_target_dsn, everything) == rows(pg_dsn, everything)
