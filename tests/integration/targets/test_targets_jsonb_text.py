"""``bson_json.canonical`` prints JSON as Postgres prints the ``jsonb`` it parses to.

The sweep compares a source's JSON keys with the target's as text, and the shadow keys rows
by that text: any JSON the source writes (extended JSON escapes non-ASCII, keeps a
document's field order, writes numbers as Python does) must give the text the column
prints, or a row reads as gone at the source and is deleted. Checked against the server,
for JSON written the way ``bson_arrow.to_json`` writes it and the way Polars does."""

from __future__ import annotations

import json

import psycopg
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncengine.codecs.bson_json import canonical

_text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(_json, min_size=1, max_size=8), ascii_only=st.booleans())
@example(values=[-0.0, {"z": -0.0}, [-0]], ascii_only=True)  # numeric has no negative zero
def test_canonical_text_is_what_jsonb_prints(pg_target_dsn, values, ascii_only):
    texts = [json.dumps(v, ensure_ascii=ascii_only) for v in values]
    with psycopg.connect(pg_target_dsn) as conn:
        printed = [
            conn.execute("SELECT %s::jsonb::text", (t,)).fetchone()[0]  # type: ignore[index]
            for t in texts
        ]
    assert canonical(pa.array(texts)).to_pylist() == printed


def test_document_field_order_and_escapes(pg_target_dsn):
    texts = ['{"region": "eu", "id": 1}', '"\\u00e9\\n"', '{"bb": [1.50, 1e20], "a": null}']
    with psycopg.connect(pg_target_dsn) as conn:
        printed = [conn.execute("SELECT %s::jsonb::text", (t,)).fetchone()[0] for t in texts]
    assert printed == [
        '{"id": 1, "region": "eu"}',
        '"é\\n"',
        '{"a": null, "bb": [1.50, 100000000000000000000]}',
    ]
    assert canonical(pa.array(texts)).to_pylist() == printed
