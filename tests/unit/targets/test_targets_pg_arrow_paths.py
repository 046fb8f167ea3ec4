"""The Arrow-only paths of a ``remote`` write into Postgres give what the general Polars paths
give: conflicts.fence.plain_rows = resolver.normalize, and the staging of a fully sent write
(targets.postgres.apply._prepare_sent) = the general prepare."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import ChangeBatch
from syncengine.conflicts.fence import plain_rows
from syncengine.conflicts.resolver import normalize
from syncengine.conflicts.rows import row_keys
from syncengine.targets.base import ServerFence, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.postgres.apply import prepare

SPEC = TableSpec(
    "t",
    ("id",),
    pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("name", pa.large_string()),
            pa.field("qty", pa.float64()),  # the batch sends int32: cast as normalize does
        ]
    ),
)
TYPES = {"id": "bigint", "name": "text", "qty": "double precision"}

change = st.tuples(
    st.sampled_from(["c", "u", "d", "r"]),
    st.one_of(st.none(), st.text(max_size=4)),
    st.one_of(st.none(), st.integers(-9, 9)),
)


def make(changes, *, before: bool = False, unsent: bool = False) -> ChangeBatch:
    rows = pa.table(
        {
            "id": pa.array(range(len(changes)), pa.int64()),
            "name": pa.array([c[1] for c in changes], pa.string()),
            "qty": pa.array([c[2] for c in changes], pa.int32()),
        }
    )
    return ChangeBatch.build(
        "public.t",
        rows,
        ops=[c[0] for c in changes],
        positions=[f"{i:04d}" for i in range(len(changes))],
        key=["id"],
        before=rows.select(["id"]) if before else None,
        unsent={"name": [False] * len(changes)} if unsent else None,
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(change, min_size=1, max_size=20), st.booleans())
def test_plain_rows_equal_normalize(changes, before):
    batch = make(changes, before=before)
    plain = plain_rows(SPEC, batch)
    assert plain is not None
    general = normalize(SPEC, batch)
    assert plain.column_names == general.columns
    assert plain.to_pylist() == general.to_arrow().to_pylist()


def test_plain_rows_leave_other_batches_to_the_general_path():
    one = [("c", "a", 1), ("u", "b", 2)]
    assert plain_rows(SPEC, make(one, unsent=True)) is None
    repeated = make(one)
    repeated = repeated.replace(
        repeated.data.set_column(0, "id", pa.chunked_array([pa.array([1, 1], pa.int64())]))
    )
    assert plain_rows(SPEC, repeated) is None
    truncate = make([("t", None, None), ("c", "a", 1)])
    assert plain_rows(SPEC, truncate) is None
    two_keys = TableSpec("t", ("id", "name"), SPEC.schema)
    assert plain_rows(two_keys, make(one)) is None
    documents = pa.array([{"x": 1}, {"x": 2}])  # a nested key Arrow cannot count
    nested = ChangeBatch.build(
        "t", pa.table({"id": documents}), ops=["c", "u"], positions=["1", "2"], key=["id"]
    )
    assert plain_rows(TableSpec("t", ("id",), pa.schema([("id", documents.type)])), nested) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(change, min_size=1, max_size=20), st.booleans())
def test_staging_a_fully_sent_write_equals_the_general_prepare(changes, fenced):
    sent = make(changes)
    general = make(changes, unsent=True)  # an all-false mask: the general path, same meaning
    shadow = ShadowUpdate()
    if fenced:
        keys = row_keys(pl.from_arrow(sent.data.select(["id"])), ["id"])
        shadow = ShadowUpdate(fence=ServerFence(keys.to_arrow(), enforce=True))
    fast = prepare(TableWrite(SPEC, sent, shadow), TYPES)
    slow = prepare(TableWrite(SPEC, general, shadow), TYPES)
    assert fast.rows.column_names == slow.rows.column_names
    assert fast.rows.to_pylist() == slow.rows.to_pylist()
    assert (fast.columns, fast.patterns, fast.truncate) == (slow.columns, slow.patterns, False)
    assert fast.keys(["id"], [0]).to_dicts() == slow.keys(["id"], [0]).to_dicts()
    assert fast.original_frame.select("id", "__row").equals(
        slow.original_frame.select("id", "__row")
    )
    dropped = fast.without(pa.array([i % 2 == 0 for i in range(sent.num_rows)]))
    assert dropped.rows.column("__row").to_pylist() == list(range(dropped.rows.num_rows))
    assert dropped.original_frame["__row"].to_list() == list(range(dropped.rows.num_rows))
