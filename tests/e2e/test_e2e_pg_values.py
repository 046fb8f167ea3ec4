"""Every value Postgres can store arrives exactly, Postgres → Postgres, through the backfill and
through the stream (issue 23): infinities, BC dates, ``24:00``, multi-dimensional arrays,
enum / composite / domain columns on an auto-created target table, and the values that
already round-tripped (kept as a regression guard). Compared as Postgres renders each value
(``::text``) on both sides."""

from __future__ import annotations

import textwrap

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      values:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.v, public.parted]
          snapshot_chunk_rows: 4
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 3, max_wait: 100ms}
    """
)

TYPES = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
    "CREATE TYPE pair AS (a integer, m mood, note text)",
)

#: column → (type, the values its rows cycle through, as SQL literals)
COLUMNS: dict[str, tuple[str, list[str]]] = {
    "ts": (
        "timestamp",
        [
            "'infinity'",
            "'-infinity'",
            "'4713-01-01 00:00:00 BC'",
            "'2024-02-29 12:34:56.789012'",
            "'294276-12-31 23:59:59.999999'",  # beyond Arrow's timestamp[us]: as text
            "'0044-03-15 12:00:00 BC'",
        ],
    ),
    "tstz": (
        "timestamptz",
        ["'-infinity'", "'infinity'", "'4713-01-01 00:00:00+00 BC'", "'2024-01-01 10:00:00+02'"],
    ),
    "d": (
        "date",
        ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'", "'2024-02-29'"],
    ),
    "t": ("time", ["'24:00:00'", "'00:00:00'", "'12:34:56.789'"]),
    "ia": ("int[][]", ["'{{1,2},{3,4}}'", "'{1,NULL,3}'", "'[0:1]={7,8}'", "'{}'"]),
    "ta": ("text[]", ['\'{x,"y,z","NULL",NULL}\'', "'{{a,\"b c\"},{d,NULL}}'", '\'{"q\\"uote"}\'']),
    "n12": ("numeric(12,2)", ["'NaN'", "'1.25'", "'-9999999999.99'"]),
    "n60": ("numeric(60,20)", ["'1234567890123456789012345678901234567890.12345678901234567890'"]),
    "nu": ("numeric", ["'NaN'", "'1e-30'", "'123456789012345678901234567890.5'"]),
    "f8": ("double precision", ["'Infinity'", "'-Infinity'", "'-0'", "'NaN'", "'0.1'"]),
    "f4": ("real", ["'-0'", "'Infinity'", "'3.4028235e38'"]),
    "mon": ("money", ["'1234.56'", "'-0.01'"]),
    "iv": ("interval", ["'1 year 2 mons 3 days 04:05:06.7'", "'-3 days'"]),
    "ttz": ("timetz", ["'12:00:00+05:30'", "'24:00:00-01'"]),
    "b": ("bytea", ["'\\x00ff10'", "''"]),
    "vb": ("bit varying(8)", ["B'101'", "B''"]),
    "j": ("json", ['\'{"b": 1,   "a": [2, {"c": null}]}\'', "'[1,2]'", "'\"s\"'"]),
    "jb": ("jsonb", ['\'{"b": 1, "a": [2]}\'', "'null'"]),
    "u": ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    "ip": ("inet", ["'10.0.0.1/8'", "'::1'"]),
    "net": ("cidr", ["'10.0.0.0/8'"]),
    "mac": ("macaddr", ["'08:00:2b:01:02:03'"]),
    "r": ("int4range", ["'[1,5)'", "'empty'", "'(,3]'"]),
    "tr": ("tstzrange", ["'[2024-01-01,infinity)'", "'empty'"]),
    "p": ("point", ["'(1.5,-2)'"]),
    "tv": ("tsvector", ["'a fat cat'"]),
    "x": ("xml", ["'<a b=\"1\">t</a>'"]),
    "mo": ("mood", ["'happy'", "'sad'"]),
    "pr": ("pair", ["'(1,ok,\"x, y\")'", "'(,,)'"]),
    "di": ("posint", ["7"]),
    "moa": ("mood[]", ["'{ok,sad}'"]),
}
SEEDED = 12


def insert(first: int, count: int) -> str:
    values = []
    for i in range(first, first + count):
        cells = [str(i)] + [f"{vals[i % len(vals)]}::{type_}" for type_, vals in COLUMNS.values()]
        values.append(f"({', '.join(cells)})")
    return f"INSERT INTO v VALUES {', '.join(values)}"


def rendered(dsn: str) -> list[tuple[object, ...]]:
    columns = ", ".join(f"{c}::text" for c in COLUMNS)
    return rows(dsn, f"SELECT id, {columns}, md5(big), length(big) FROM v ORDER BY id")


def test_every_value_round_trips_through_backfill_and_stream(tmp_path, pg_dsn, pg_target_dsn):
    definition = ", ".join(f"{c} {t}" for c, (t, _) in COLUMNS.items())
    execute(
        pg_dsn,
        *TYPES,
        f"CREATE TABLE v (id int PRIMARY KEY, {definition}, big text)",
        insert(0, SEEDED),
        # a 300 kB TOAST value, left unchanged by a later update
        "UPDATE v SET big = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 9600) g)"
        " WHERE id = 1",
        "CREATE TABLE parted (id int, at date, note text, PRIMARY KEY (id, at)) "
        "PARTITION BY RANGE (at)",
        "CREATE TABLE parted_old PARTITION OF parted FOR VALUES FROM (MINVALUE) TO ('2000-01-01')",
        "CREATE TABLE parted_new PARTITION OF parted FOR VALUES FROM ('2000-01-01') TO (MAXVALUE)",
        "INSERT INTO parted VALUES (1, '-infinity', NULL), (2, '1500-01-01 BC', 'x'), "
        "(3, 'infinity', 'x')",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    backfill = cli.run("backfill")
    assert "Traceback" not in backfill.stderr
    source = rendered(pg_dsn)
    assert len(source) == SEEDED
    assert rendered(pg_target_dsn) == source

    # the stream: the same values again, updated rows, an unchanged TOAST value, a delete
    execute(
        pg_dsn,
        insert(100, SEEDED),
        "UPDATE v SET ts = 'infinity', d = '4713-01-01 BC', t = '24:00:00' WHERE id = 1",
        "UPDATE v SET ia = '{{{1}},{{2}}}', mo = 'ok' WHERE id IN (2, 3)",
        "DELETE FROM v WHERE id = 4",
        "INSERT INTO parted VALUES (4, '4713-01-01 BC', ''), (5, 'infinity', NULL)",
        "UPDATE parted SET note = 'late' WHERE at IN ('-infinity', 'infinity')",
    )
    cli.run("sync", "--once")
    source = rendered(pg_dsn)
    assert len(source) == 2 * SEEDED - 1
    assert rendered(pg_target_dsn) == source
    parted = "SELECT id, at::text, note FROM parted ORDER BY id, at"
    assert rows(pg_target_dsn, parted) == rows(pg_dsn, parted)
    # the user-defined types were created on the target, with the same definitions
    types = (
        "SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), "
        "(SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid)"
        "::text FROM pg_type t WHERE t.typname IN ('mood', 'pair', 'posint') ORDER BY 1"
    )
    assert rows(pg_target_dsn, types) == rows(pg_dsn, types)
    check = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = 'posint'::regtype"
    assert rows(pg_target_dsn, check) == rows(pg_dsn, check) == [("CHECK ((VALUE > 0))",)]
    column_types = (
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'v'::regclass AND attnum > 0 ORDER BY attnum"
    )
    assert rows(pg_target_dsn, column_types) == rows(pg_dsn, column_types)
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
