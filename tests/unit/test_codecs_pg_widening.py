"""Which Postgres types hold which others exactly, and the type a column becomes to hold two:
how a target follows a source's ALTER COLUMN … TYPE without rounding or refusing values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncengine.codecs.pg_widening import holds, joined, wider

TEMPORAL = [
    "timestamp with time zone", "timestamp without time zone",
    "time with time zone", "time without time zone",
]  # fmt: skip


def _temporal(name: str, digits: int | None) -> str:
    if digits is None:
        return name
    base, _, zone = name.partition(" ")
    return f"{base}({digits}) {zone}"


numerics = st.builds(
    lambda p, s: f"numeric({p},{min(s, p)})", st.integers(1, 1000), st.integers(0, 1000)
)
types = st.one_of(
    st.sampled_from(["smallint", "integer", "bigint", "numeric", "real", "double precision",
                     "text", "character varying", "boolean", "uuid", "jsonb", "interval"]),
    numerics,
    st.builds(lambda n: f"character varying({n})", st.integers(1, 10_000)),
    st.builds(_temporal, st.sampled_from(TEMPORAL), st.none() | st.integers(0, 6)),
    st.builds(lambda d: f"interval({d})", st.integers(0, 6)),
)  # fmt: skip
both = st.one_of(types, types.map(lambda t: t + "[]"))


@pytest.mark.parametrize(
    ("target", "source", "becomes"),
    [
        ("integer", "bigint", "bigint"),
        ("bigint", "integer", None),
        ("numeric(10,2)", "numeric(20,4)", "numeric(20,4)"),
        ("numeric(10,4)", "numeric(12,2)", "numeric(14,4)"),
        ("numeric(5,2)", "integer", "numeric(12,2)"),
        ("numeric(10,2)", "bigint", "numeric(21,2)"),
        ("numeric(10,2)", "numeric", "numeric"),
        ("numeric", "numeric(10,2)", None),
        ("integer", "text", "text"),
        ("text", "integer", None),
        ("character varying(5)", "character varying(10)", "character varying(10)"),
        ("character varying(5)", "text", "text"),
        ("timestamp(0) with time zone", "timestamp with time zone", "timestamp with time zone"),
        ("timestamp with time zone", "timestamp(3) with time zone", None),
        ("integer", "real", "double precision"),
        ("real", "double precision", "double precision"),
        ("integer[]", "bigint[]", "bigint[]"),
        ("interval(0)", "interval", "interval"),
        # no type of a family holds both exactly: left to the server's refusal
        ("double precision", "bigint", None),
        ("integer", "uuid", None),
        ("timestamp without time zone", "timestamp with time zone", None),
        ("character(3)", "character(5)", None),
    ],
)
def test_wider(target, source, becomes):
    assert wider(target, source) == becomes


@given(both, both)
def test_a_wider_type_holds_both(target, source):
    becomes = wider(target, source)
    if holds(target, source):
        assert becomes is None
    elif becomes is not None:
        assert holds(becomes, source) and holds(becomes, target)


@given(both, both)
def test_a_joined_declaration_holds_both(a, b):
    common = joined(a, b)
    if common is not None:
        assert holds(common, a) and holds(common, b)
    if holds(a, b) or holds(b, a):
        assert common in (a, b)


@given(types, types, types)
def test_holding_is_transitive(a, b, c):
    if holds(a, b) and holds(b, c):
        assert holds(a, c)
