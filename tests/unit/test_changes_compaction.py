"""Compaction must not change the outcome: applying the compacted batch to an empty table
gives the same table as applying every raw change in order."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import (
    OP_DELETE,
    OP_INSERT,
    OP_READ,
    OP_TRUNCATE,
    OP_UPDATE,
    ChangeBatch,
    compact,
    concat_batches,
)

COLUMNS = ("a", "b")


def apply(state: dict, batch: ChangeBatch) -> dict:
    """Reference apply: the semantics documented in syncengine.changes, row by row."""
    state = {k: dict(v) for k, v in state.items()}
    rows = batch.data.to_pylist()
    for row in rows:
        op = row["_op"]
        if op == OP_TRUNCATE:
            state.clear()
            continue
        key = row["id"]
        sent = {c: row[c] for c in COLUMNS if not row.get(f"_unsent.{c}")}
        if op == OP_DELETE:
            state.pop(key, None)
        elif op in (OP_INSERT, OP_READ):
            state[key] = sent
        else:
            state.setdefault(key, {}).update(sent)
    return state


change = st.tuples(
    st.sampled_from([OP_INSERT, OP_UPDATE, OP_DELETE, OP_READ, OP_UPDATE, OP_TRUNCATE]),
    st.integers(0, 4),
    st.one_of(st.none(), st.integers(0, 9)),
    st.one_of(st.none(), st.text(max_size=3)),
    st.booleans(),
    st.booleans(),
)


def make_batch(changes) -> ChangeBatch:
    ids, a, b, ops, ua, ub = ([] for _ in range(6))
    for op, key, va, vb, unsent_a, unsent_b in changes:
        ops.append(op)
        ids.append(key)
        a.append(va)
        b.append(vb)
        # only updates may leave a column unsent (inserts always send every column)
        ua.append(unsent_a and op == OP_UPDATE)
        ub.append(unsent_b and op == OP_UPDATE)
    rows = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "a": pa.array(a, pa.int64()),
            "b": pa.array(b, pa.string()),
        }
    )
    return ChangeBatch.build(
        "public.t",
        rows,
        ops=ops,
        positions=[f"{i:08d}" for i in range(len(ops))],
        key=["id"],
        unsent={"a": ua, "b": ub},
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(change, min_size=1, max_size=40))
def test_compacted_batch_has_same_effect(changes):
    batch = make_batch(changes)
    compacted = compact(batch)
    assert apply({}, compacted) == apply({}, batch)
    non_truncate = [r for r in compacted.data.to_pylist() if r["_op"] != OP_TRUNCATE]
    assert len({r["id"] for r in non_truncate}) == len(non_truncate), "one row per key"


@settings(max_examples=100, deadline=None)
@given(st.lists(change, min_size=1, max_size=30), st.lists(change, min_size=1, max_size=30))
def test_compaction_composes_with_existing_state(first, second):
    """Compacting the second batch and applying it on top of the first's result is exact."""
    state = apply({}, make_batch(first))
    batch = make_batch(second)
    assert apply(state, compact(batch)) == apply(state, batch)


def test_ten_updates_become_one_write_keeping_last_position():
    rows = pa.table({"id": [1] * 10, "a": list(range(10)), "b": ["x"] * 10})
    batch = ChangeBatch.build(
        "t", rows, ops=["u"] * 10, positions=[f"{i:04d}" for i in range(10)], key=["id"]
    )
    out = compact(batch)
    assert out.data.to_pylist() == [
        {"id": 1, "a": 9, "b": "x", "_op": "u", "_pos": "0009", "_ts": None, "_txid": None}
    ]


def test_distinct_keys_are_returned_as_they_are_and_two_null_keys_are_one_key():
    rows = pa.table({"id": [3, 1, 2], "a": [1, 2, 3]})
    batch = ChangeBatch.build("t", rows, ops=["u", "c", "u"], positions=["1", "2", "3"], key=["id"])
    assert compact(batch) is batch  # one Arrow count, no group-by
    nulls = pa.table({"id": pa.array([None, None], pa.int64()), "a": [1, 2]})
    twice = ChangeBatch.build("t", nulls, ops=["u", "u"], positions=["1", "2"], key=["id"])
    assert compact(twice).data.column("a").to_pylist() == [2]


def test_unsent_value_is_taken_from_earlier_change():
    rows = pa.table({"id": [1, 1], "a": [5, None], "b": ["old", "new"]})
    batch = ChangeBatch.build(
        "t", rows, ops=["u", "u"], positions=["1", "2"], key=["id"], unsent={"a": [False, True]}
    )
    out = compact(batch).data.to_pylist()
    assert out[0]["a"] == 5 and out[0]["b"] == "new" and out[0]["_unsent.a"] is False


def test_concat_fills_missing_unsent_masks_with_sent():
    one = ChangeBatch.build(
        "t", pa.table({"id": [1], "a": [1]}), ops=["c"], positions=["1"], key=["id"]
    )
    two = ChangeBatch.build(
        "t",
        pa.table({"id": [1], "a": [None]}),
        ops=["u"],
        positions=["2"],
        key=["id"],
        unsent={"a": [True]},
    )
    both = concat_batches([one, two])
    assert both.data.column("_unsent.a").to_pylist() == [False, True]
    assert compact(both).data.column("a").to_pylist() == [1]


def test_concat_makes_a_column_a_batch_lacks_unsent_in_its_rows():
    """Documents without a field (one flush) joined with documents that have it (the next):
    the first rows did not send the field, so it stays unsent there rather than null."""
    without = ChangeBatch.build(
        "t", pa.table({"id": [1, 2], "a": [1, 2]}), ops=["c", "u"], positions=["1", "2"],
        key=["id"],
    )  # fmt: skip
    with_b = ChangeBatch.build(
        "t", pa.table({"id": [3, 2], "a": [3, 4], "b": ["x", None]}), ops=["c", "u"],
        positions=["3", "4"], key=["id"], unsent={"a": [False, True]},
    )  # fmt: skip
    both = concat_batches([without, with_b])
    assert both.data.column("_unsent.b").to_pylist() == [True, True, False, False]
    assert both.data.column("_unsent.a").to_pylist() == [False, False, False, True]
    state = apply({2: {"a": 0, "b": "kept"}}, compact(both))
    assert state == {1: {"a": 1}, 2: {"a": 2, "b": None}, 3: {"a": 3, "b": "x"}}


def test_build_keeps_source_type_metadata():
    field = pa.field("price", pa.decimal128(12, 2), metadata={b"pg_type": b"numeric(12,2)"})
    rows = pa.table({"price": pa.array([None], pa.decimal128(12, 2))}, schema=pa.schema([field]))
    batch = ChangeBatch.build("t", rows, ops=["c"], positions=["1"], before=rows)
    assert batch.data.schema.field("price").metadata == {b"pg_type": b"numeric(12,2)"}
    assert batch.data.schema.field("_before.price").metadata == {b"pg_type": b"numeric(12,2)"}


def test_concat_of_one_schema_chains_the_parts_and_keeps_the_resume_rule():
    def part(ids, pos, **meta):
        rows = pa.table({"id": pa.array(ids, pa.int64()), "b": pa.array(["x"] * len(ids))})
        return ChangeBatch.build(
            "t", rows, ops=["c"] * len(ids), positions=pos, key=["id"], meta=meta
        )

    one, two = part([1, 2], ["1", "2"], at_resume=True), part([3], ["3"])
    both = concat_batches([one, two])
    assert both.data.to_pylist() == one.data.to_pylist() + two.data.to_pylist()
    assert both.data.schema.equals(one.data.schema)
    assert "at_resume" not in both.meta  # only a claim every part makes survives
    assert concat_batches([one, part([4], ["4"], at_resume=True)]).meta["at_resume"] is True
