"""The compaction of fully sent batches (syncengine.lastchange) gives exactly the general
pass's rows: same keys in the same order, same ops, positions, values and before-images."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine import lastchange
from syncengine.changes import OP_DELETE, OP_INSERT, OP_READ, OP_UPDATE, ChangeBatch, compact

change = st.tuples(
    st.sampled_from([OP_INSERT, OP_UPDATE, OP_DELETE, OP_READ, OP_UPDATE]),
    st.one_of(st.none(), st.integers(0, 4)),
    st.integers(0, 2),
    st.one_of(st.none(), st.integers(0, 9)),
    st.one_of(st.none(), st.text(max_size=3)),
)


def make_batch(changes, *, forced_general: bool, key=("k1", "k2"), k1_type=None) -> ChangeBatch:
    """A batch keyed by ``key`` (two columns by default) with a before-image;
    ``forced_general`` adds an all-false unsent mask, which sends the batch through the general
    pass without changing its meaning."""
    k1, k2, a, b, ops = ([] for _ in range(5))
    for op, x, y, va, vb in changes:
        ops.append(op)
        k1.append(x)
        k2.append(y)
        a.append(va)
        b.append(vb)
    n = len(ops)
    table = pa.table(
        {
            "k1": pa.array(k1, k1_type or pa.int64()),
            "k2": pa.array(k2, pa.int32()),
            "a": pa.array(a, pa.int64()),
            "b": pa.array(b, pa.string()),
            "_op": pa.array(ops, pa.string()),
            "_pos": pa.array([f"{i:08d}" for i in range(n)], pa.string()),
            "_before.a": pa.array([None if v is None else v + 100 for v in a], pa.int64()),
        }
    )
    if forced_general:
        table = table.append_column("_unsent.a", pa.array([False] * n))
    return ChangeBatch("public.t", table, tuple(key))


def rows(batch: ChangeBatch) -> list[dict]:
    names = [n for n in batch.data.column_names if not n.startswith("_unsent.")]
    return batch.data.select(names).to_pylist()


@settings(max_examples=300, deadline=None)
@given(st.lists(change, min_size=1, max_size=40))
def test_fast_compaction_equals_the_general_pass(changes):
    fast = make_batch(changes, forced_general=False)
    assert lastchange.applies(fast)
    general = make_batch(changes, forced_general=True)
    assert not lastchange.applies(general)
    assert rows(compact(fast)) == rows(compact(general))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(change, min_size=1, max_size=40),
    st.sampled_from([(("k1",), None), (("k1",), pa.string()), (("k1",), pa.float64()),
                     (("k2", "k1"), pa.float64()), (("b", "k1"), None)]),
)  # fmt: skip
def test_fast_compaction_equals_the_general_pass_for_other_keys(changes, keyed):
    """One-column keys (encoded, or a string), float keys (the group-by's path) and a key
    whose column holds text."""
    key, k1_type = keyed
    if k1_type == pa.string():
        changes = [(op, None if x is None else str(x), *rest) for op, x, *rest in changes]
    fast = make_batch(changes, forced_general=False, key=key, k1_type=k1_type)
    general = make_batch(changes, forced_general=True, key=key, k1_type=k1_type)
    assert rows(compact(fast)) == rows(compact(general))


def test_batch_without_repeated_keys_is_returned_as_is():
    batch = make_batch([(OP_INSERT, 1, 0, 1, "x"), (OP_UPDATE, 2, 0, 2, "y")], forced_general=False)
    assert compact(batch) is batch


def test_truncate_takes_the_general_pass():
    batch = ChangeBatch.build(
        "public.t",
        pa.table({"id": pa.array([1, None, 1], pa.int64())}),
        ops=[OP_INSERT, "t", OP_UPDATE],
        positions=["1", "2", "3"],
        key=["id"],
    )
    assert not lastchange.applies(batch)
    assert [r["_op"] for r in compact(batch).data.to_pylist()] == ["t", OP_UPDATE]
