# ruff: noqa: E501  (a reference table reads best one case per line)
"""Every supported expression form against a reference result (Postgres semantics).

The expected values are what PostgreSQL returns for the same expression over the same rows
(the integration test ``test_mappings_pg_reference`` checks a subset against a live server).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from syncengine.mappings.compiler import NOW_COLUMN, ExprCompiler

UTC = dt.UTC
TS = [
    dt.datetime(2024, 5, 17, 13, 45, 12, 500000, tzinfo=UTC),
    dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
    None,
    dt.datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
]
FRAME = pl.DataFrame(
    {
        "a": [1, -7, None, 10],
        "b": [2, 3, 0, 4],
        "f": [1.5, -2.5, None, 0.25],
        "s": ["Hello", " x ", None, "abc"],
        "n": ["12", "x", None, " 7 "],
        "flag": [True, False, None, True],
        "ts": TS,
        "d": [dt.date(2024, 1, 2), None, dt.date(2020, 2, 29), dt.date(1999, 12, 31)],
        "j": ['{"a":{"b":[1,2]},"c":"x"}', None, "{}", '{"c":5,"a":{"b":[3]}}'],
        "doc": [{"x": 1, "y": {"z": "q"}}, None, {"x": None, "y": None}, {"x": 3, "y": {"z": "w"}}],
        "tags": [["a", "b"], [], None, ["c"]],
        "u": [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
            None,
            "nope",
        ],
    }
).with_columns(pl.lit(dt.datetime(2025, 1, 1, tzinfo=UTC)).alias(NOW_COLUMN))

CASES: list[tuple[str, list[object]]] = [
    # columns, literals, nested
    ("a", [1, -7, None, 10]),
    ("doc.x", [1, None, None, 3]),
    ("doc.y.z", ["q", None, None, "w"]),
    ("j.c", ["x", None, None, "5"]),
    ("'lit'", ["lit"] * 4),
    ("NULL", [None] * 4),
    ("TRUE", [True] * 4),
    # arithmetic (integer division and % truncate toward zero)
    ("a + b", [3, -4, None, 14]),
    ("a - b * 2", [-3, -13, None, 2]),
    ("a / b", [0, -2, None, 2]),
    ("a % b", [1, -1, None, 2]),
    ("a / 2.0", [0.5, -3.5, None, 5.0]),
    ("-a", [-1, 7, None, -10]),
    ("abs(a)", [1, 7, None, 10]),
    ("round(f)", [2.0, -3.0, None, 0.0]),
    ("round(f, 1)", [1.5, -2.5, None, 0.3]),
    ("floor(f)", [1.0, -3.0, None, 0.0]),
    ("ceil(f)", [2.0, -2.0, None, 1.0]),
    # comparison and logic (three-valued)
    ("a > 1", [False, False, None, True]),
    ("a <> 1", [False, True, None, True]),
    ("a = 1 or flag", [True, False, None, True]),
    ("a = 1 and flag", [True, False, None, False]),
    ("not flag", [False, True, None, False]),
    ("a is null", [False, False, True, False]),
    ("a is not null", [True, True, False, True]),
    ("flag is true", [True, False, False, True]),
    ("flag is not false", [True, False, True, True]),
    ("a is not distinct from 1", [True, False, False, False]),
    ("a in (1, 10)", [True, False, None, True]),
    ("a not in (1, 10)", [False, True, None, False]),
    ("a in (1, null)", [True, None, None, None]),
    ("a between 0 and 5", [True, False, None, False]),
    ("a not between 0 and 5", [False, True, None, True]),
    ("s like 'H%'", [True, False, None, False]),
    ("s like '%c'", [False, False, None, True]),
    ("s like '_b%'", [False, False, None, True]),
    ("s not like '%l%'", [False, True, None, True]),
    ("s ilike 'h%'", [True, False, None, False]),
    ("s ~ '^[a-z]+$'", [False, False, None, True]),
    ("s ~* '^h'", [True, False, None, False]),
    # conditionals
    ("case when a > 2 then 'big' when a < 0 then 'neg' else 'small' end", ["small", "neg", "small", "big"]),
    ("case a when 1 then 'one' end", ["one", None, None, None]),
    ("coalesce(a, b, 0)", [1, -7, 0, 10]),
    ("nullif(a, 1)", [None, -7, None, 10]),
    ("greatest(a, b)", [2, 3, 0, 10]),
    ("least(a, b)", [1, -7, 0, 4]),
    # strings
    ("lower(s)", ["hello", " x ", None, "abc"]),
    ("upper(s)", ["HELLO", " X ", None, "ABC"]),
    ("trim(s)", ["Hello", "x", None, "abc"]),
    ("ltrim(s)", ["Hello", "x ", None, "abc"]),
    ("rtrim(s)", ["Hello", " x", None, "abc"]),
    ("trim(both 'a' from s)", ["Hello", " x ", None, "bc"]),
    ("length(s)", [5, 3, None, 3]),
    ("s || '!'", ["Hello!", " x !", None, "abc!"]),
    ("s || a", ["Hello1", " x -7", None, "abc10"]),
    ("concat(s, '-', a)", ["Hello-1", " x --7", "-", "abc-10"]),
    ("concat_ws('/', s, a)", ["Hello/1", " x /-7", "", "abc/10"]),
    ("substring(s, 2, 3)", ["ell", "x ", None, "bc"]),
    ("substring(s from 0 for 3)", ["He", " x", None, "ab"]),
    ("substr(s, 3)", ["llo", " ", None, "c"]),
    ("replace(s, 'l', 'L')", ["HeLLo", " x ", None, "abc"]),
    ("left(s, 2)", ["He", " x", None, "ab"]),
    ("right(s, 2)", ["lo", "x ", None, "bc"]),
    # casts
    ("a::text", ["1", "-7", None, "10"]),
    ("n::int", [12, None, None, 7]),
    ("f::int", [2, -2, None, 0]),
    ("a::numeric(6,2)", [Decimal("1.00"), Decimal("-7.00"), None, Decimal("10.00")]),
    ("cast(f as bigint)", [2, -2, None, 0]),
    ("(f::numeric(4,2))::int", [2, -3, None, 0]),
    ("flag::text", ["true", "false", None, "true"]),
    ("'yes'::boolean", [True] * 4),
    ("'2024-01-02'::date", [dt.date(2024, 1, 2)] * 4),
    ("'2024-01-02 03:04:05+02'::timestamptz", [dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)] * 4),
    ("'2024-01-02T03:04:05'::timestamp", [dt.datetime(2024, 1, 2, 3, 4, 5)] * 4),
    ("d::timestamptz", [dt.datetime(2024, 1, 2, tzinfo=UTC), None, dt.datetime(2020, 2, 29, tzinfo=UTC), dt.datetime(1999, 12, 31, tzinfo=UTC)]),
    ("ts::date", [dt.date(2024, 5, 17), dt.date(2023, 12, 31), None, dt.date(2024, 2, 29)]),
    ("u::uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"] * 2 + [None, None]),
    ("doc::jsonb", ['{"x":1,"y":{"z":"q"}}', None, '{"x":null,"y":null}', '{"x":3,"y":{"z":"w"}}']),
    ("tags::text", ['["a","b"]', "[]", None, '["c"]']),
    ("s::varchar(2)", ["He", " x", None, "ab"]),
    # dates and times
    ("date_trunc('month', ts)", [dt.datetime(2024, 5, 1, tzinfo=UTC), dt.datetime(2023, 12, 1, tzinfo=UTC), None, dt.datetime(2024, 2, 1, tzinfo=UTC)]),
    ("date_trunc('hour', ts)", [dt.datetime(2024, 5, 17, 13, tzinfo=UTC), dt.datetime(2023, 12, 31, 23, tzinfo=UTC), None, dt.datetime(2024, 2, 29, tzinfo=UTC)]),
    ("date_trunc('week', ts)", [dt.datetime(2024, 5, 13, tzinfo=UTC), dt.datetime(2023, 12, 25, tzinfo=UTC), None, dt.datetime(2024, 2, 26, tzinfo=UTC)]),
    ("extract(year from ts)", [2024, 2023, None, 2024]),
    ("extract(month from d)", [1, None, 2, 12]),
    ("extract(dow from ts)", [5, 0, None, 4]),
    ("extract(doy from ts)", [138, 365, None, 60]),
    ("extract(second from ts)", [12.5, 59.0, None, 0.0]),
    ("extract(epoch from ts)", [1715953512.5, 1704067199.0, None, 1709164800.0]),
    ("date_part('quarter', ts)", [2, 4, None, 1]),
    ("ts > '2024-01-01'", [True, False, None, True]),
    ("ts + interval '1 day'", [dt.datetime(2024, 5, 18, 13, 45, 12, 500000, tzinfo=UTC), dt.datetime(2024, 1, 1, 23, 59, 59, tzinfo=UTC), None, dt.datetime(2024, 3, 1, tzinfo=UTC)]),
    ("now()", [dt.datetime(2025, 1, 1, tzinfo=UTC)] * 4),
    ("current_date", [dt.date(2025, 1, 1)] * 4),
    # JSON and documents
    ("j->'a'->>'b'", ["[1,2]", None, None, "[3]"]),
    ("j->'a'->'b'->>0", ["1", None, None, "3"]),
    ("j->>'c'", ["x", None, None, "5"]),
    ("j #>> '{a,b,1}'", ["2", None, None, None]),
    ("doc->>'x'", ["1", None, None, "3"]),
    ("doc->'y'->>'z'", ["q", None, None, "w"]),
    ("doc->'y'", [{"z": "q"}, None, None, {"z": "w"}]),
    # hashing for masks
    ("md5(s)", ["8b1a9953c4611296a827abf8c47804d7", "6722c218a6f30869ef6886dc4b050a37", None, "900150983cd24fb0d6963f7d28e17f72"]),
    ("sha256(s)", ["185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969", "fc191eafd9c50bef4eed244d249529de9980ffa2404607c0f98eac44c8da7728", None, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression_matches_reference(text: str, expected: list[object]) -> None:
    compiled = ExprCompiler(FRAME.schema).compile(text)
    got = FRAME.with_columns(compiled.expr.alias("x"))["x"].to_list()
    if expected and isinstance(expected[0], float):
        assert got == pytest.approx(expected, nan_ok=True) if None not in got else got == expected
    else:
        assert got == expected


def test_dependencies_are_the_source_paths_read() -> None:
    compiler = ExprCompiler(FRAME.schema)
    assert compiler.compile("lower(s) || doc.y.z").deps == {"s", "doc.y.z"}
    assert compiler.compile("now() > _ts").deps == frozenset()


@pytest.mark.parametrize(
    ("text", "failing_rows"),
    [
        ("n::int", [False, True, False, False]),
        ("u::uuid", [False, False, False, True]),
        ("a / (b - b)", [True, True, False, True]),
        ("s::numeric(3,1)", [True, True, False, True]),
        ("f::numeric(2,1)", [False, False, False, False]),
        ("a::numeric(1,0)", [False, False, False, True]),
        ("try_cast(n as int)", [False, False, False, False]),
    ],
)
def test_failure_masks_mark_exactly_the_rows_that_fail(text: str, failing_rows: list[bool]) -> None:
    compiled = ExprCompiler(FRAME.schema).compile(text)
    masks = [c.failed for c in compiled.checks] or [pl.lit(False)]
    got = FRAME.with_columns(pl.any_horizontal(masks).fill_null(False).alias("x"))["x"].to_list()
    assert got == failing_rows
