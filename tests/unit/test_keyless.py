"""Keyless batches as multiset deltas, and the per-table fence (syncengine.keyless)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine import keyless
from syncengine.changes import ChangeBatch


def batch(ops, rows, before=None, unsent=None, meta=None) -> ChangeBatch:
    data = pa.table({"a": [r[0] for r in rows], "b": [r[1] for r in rows]})
    old = None
    if before is not None:
        old = pa.table({"a": [r[0] for r in before], "b": [r[1] for r in before]})
    positions = [f"0000000000000010.{i:08X}" for i in range(len(ops))]
    return ChangeBatch.build(
        "public.t", data, ops=ops, positions=positions, before=old, unsent=unsent, meta=meta
    )


def applied(start: Counter, change: keyless.KeylessDelta) -> Counter:
    out = Counter() if change.truncate else Counter(start)
    for row in change.removes.iter_rows():
        *image, n, _ = row
        assert out[tuple(image)] >= n, "removes a row the target does not hold"
        out[tuple(image)] -= n
    for row in change.appends.iter_rows():
        out[tuple(row[:2])] += 1
    return +out


def test_insert_then_delete_in_one_group_cancels_and_keeps_the_twin():
    b = batch(["c", "d"], [(1, None), (None, None)], before=[(None, None), (1, None)])
    change = keyless.delta(b)
    assert change.appends.height == 0 and change.removes.height == 0
    assert applied(Counter({(1, None): 1}), change) == Counter({(1, None): 1})


def test_delete_of_one_of_two_identical_rows_removes_one():
    b = batch(["d"], [(None, None)], before=[(1, None)])
    change = keyless.delta(b)
    assert change.removes.select("a", "b", keyless.COUNT).rows() == [(1, None, 1)]
    assert applied(Counter({(1, None): 2}), change) == Counter({(1, None): 1})


def test_update_with_unsent_value_takes_it_from_the_old_image():
    b = batch(["u"], [(2, None)], before=[(1, "long")], unsent={"b": [True]})
    change = keyless.delta(b)
    assert change.appends.select("a", "b").rows() == [(2, "long")]
    assert change.removes.select("a", "b").rows() == [(1, "long")]


def test_changes_without_old_image_are_set_aside_inserts_kept():
    b = batch(["c", "d"], [(1, "x"), (1, "x")])
    change = keyless.delta(b)
    assert change.unmatched.height == 1 and "REPLICA IDENTITY FULL" in change.reason
    assert change.appends.select("a", "b").rows() == [(1, "x")]


def test_truncate_drops_what_came_before():
    b = batch(["c", "t", "c"], [(1, "x"), (None, None), (2, "y")])
    change = keyless.delta(b)
    assert change.truncate
    assert change.appends.select("a", "b").rows() == [(2, "y")]


def test_fence_drops_replayed_stream_rows_never_snapshot_rows():
    b = batch(["c", "c", "c"], [(1, "x"), (2, "y"), (3, "z")])
    fence = b.data.column("_pos")[1].as_py()
    assert keyless.unfenced(b, fence).data.column("a").to_pylist() == [3]
    snap = batch(["r", "r"], [(1, "x"), (2, "y")], meta={"snapshot": True})
    assert keyless.unfenced(snap, "FFFFFFFFFFFFFFFF").num_rows == 2
    moved = keyless.fence_shadow([keyless.unfenced(b, fence), snap])
    assert moved.upserts is not None
    assert moved.upserts.column("position").to_pylist() == [b.data.column("_pos")[2].as_py()]
    assert keyless.fence_shadow([snap]).upserts is None


values = st.sampled_from([(1, None), (1, "x"), (None, None), (2, "")])


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=4), st.lists(st.tuples(st.integers(0, 2), values), max_size=12))
def test_delta_applied_equals_changes_applied_in_order(initial, steps):
    """Any valid sequence of inserts, deletes and updates (each delete/update names a row that
    exists then) has the same effect as its delta."""
    state = Counter(initial)
    ops, rows, before = [], [], []
    for kind, value in steps:
        present = sorted(+state, key=repr)
        if kind == 0 or not present:
            ops.append("c"), rows.append(value), before.append((None, None))
            state[value] += 1
            continue
        old = present[hash(value) % len(present)]
        state[old] -= 1
        if kind == 1:
            ops.append("d"), rows.append((None, None)), before.append(old)
        else:
            ops.append("u"), rows.append(value), before.append(old)
            state[value] += 1
    if not ops:
        return
    change = keyless.delta(batch(ops, rows, before=before))
    assert applied(Counter(initial), change) == +state


def test_inserts_only_are_appended_in_order_with_an_empty_typed_removes():
    """The insert-only shortcut (an append-only table's every live group) gives what the
    multiset computation gives: every row, in order, and removes with its columns."""
    change = keyless.delta(batch(["c", "c", "c"], [(1, "x"), (2, "y"), (1, "x")]))
    assert change.appends.select("a", "b").rows() == [(1, "x"), (2, "y"), (1, "x")]
    assert change.appends[keyless.ROW].to_list() == [0, 1, 2]
    assert change.removes.height == 0
    assert change.removes.columns == ["a", "b", keyless.COUNT, keyless.ROW]
    mixed = keyless.delta(
        batch(["c", "d"], [(1, "x"), (None, None)], before=[(None, None), (1, "x")])
    )
    assert mixed.removes.schema == change.removes.schema
