"""Random filters and rows shared by the push-down property tests (unit and integration).

The grammar covers what push-down translates: comparisons, IN, BETWEEN, IS [NOT] NULL,
IS TRUE/FALSE, LIKE/ILIKE, bare boolean columns, NOT/AND/OR, and NULLs everywhere so SQL's
three-valued logic is exercised.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

WORDS = ["ab", "Ab", "abc", "b", "ba", "xy", "", "a_b", "a%b"]
COLUMNS = {"a": "int", "b": "float", "s": "text", "flag": "bool"}


def rows(count: int = 60, seed: int = 7) -> list[dict[str, object]]:
    """Rows with every column null ~20% of the time."""
    rng = random.Random(seed)

    def maybe(value: object) -> object:
        return None if rng.random() < 0.2 else value

    return [
        {
            "id": i,
            "a": maybe(rng.randint(-5, 5)),
            "b": maybe(rng.choice([-1.5, 0.0, 0.5, 2.25, 3.0])),
            "s": maybe(rng.choice(WORDS)),
            "flag": maybe(rng.random() < 0.5),
        }
        for i in range(count)
    ]


ints = st.integers(-6, 6).map(str)
floats = st.sampled_from(["-1.5", "0.0", "0.5", "2.25", "3"])
strings = st.sampled_from(WORDS).map(lambda w: "'" + w.replace("'", "''") + "'")
patterns = st.sampled_from(["a%", "%b", "%b%", "a_", "_b%", "ab", "%", "A%", "x%y"]).map(
    lambda p: f"'{p}'"
)
ops = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])


def _literal_for(column: str) -> st.SearchStrategy[str]:
    return {"a": ints, "b": floats, "s": strings}[column]


@st.composite
def comparison(draw: st.DrawFn) -> str:
    column = draw(st.sampled_from(["a", "b", "s"]))
    literal = draw(_literal_for(column))
    if draw(st.booleans()):
        return f"{column} {draw(ops)} {literal}"
    flipped = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
    op = draw(ops)
    return f"{literal} {flipped.get(op, op)} {column}"


@st.composite
def atom(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 7))
    column = draw(st.sampled_from(["a", "b", "s"]))
    if kind == 0:
        return draw(comparison())
    if kind == 1:
        values = draw(st.lists(_literal_for(column), min_size=1, max_size=3))
        negate = "NOT " if draw(st.booleans()) else ""
        return f"{column} {negate}IN ({', '.join(values)})"
    if kind == 2:
        low, high = sorted([draw(ints), draw(ints)], key=int)
        return f"a BETWEEN {low} AND {high}"
    if kind == 3:
        negate = "NOT " if draw(st.booleans()) else ""
        return f"{draw(st.sampled_from(list(COLUMNS)))} IS {negate}NULL"
    if kind == 4:
        return f"flag IS {draw(st.sampled_from(['TRUE', 'FALSE', 'NOT TRUE', 'NOT FALSE']))}"
    if kind == 5:
        op = draw(st.sampled_from(["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]))
        return f"s {op} {draw(patterns)}"
    if kind == 6:
        return "flag"
    return draw(comparison())


def predicate(depth: int = 3) -> st.SearchStrategy[str]:
    return st.recursive(
        atom(),
        lambda inner: st.one_of(
            inner.map(lambda p: f"NOT ({p})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) AND ({t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) OR ({t[1]})"),
        ),
        max_leaves=depth * 2,
    )
