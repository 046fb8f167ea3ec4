"""Property: random inserts, updates, key-changing updates and deletes, cut into transactions and
batches anyhow, decoded by the assembler, compacted per key and applied with a per-key position
fence give the source's table; replaying every batch changes nothing (no old key comes back)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import OP_DELETE, ChangeBatch, compact
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from tests.unit.pgsource import pgsource_frames as f

COLS = [("id", 23, -1, True), ("v", 25, -1, False)]

# (kind, key a, key b, value, flush after?, commit after?)
steps = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "move", "delete"]),
        st.integers(0, 4),
        st.integers(0, 4),
        st.sampled_from(["x", "y", "z"]),
        st.booleans(),
        st.booleans(),
    ),
    max_size=30,
)


def apply(target: dict, fence: dict, batch: ChangeBatch) -> None:
    """The documented apply semantics (:mod:`syncengine.changes`), behind a position fence."""
    for row in compact(batch).data.to_pylist():
        key, pos = row["id"], row["_pos"]
        if fence.get(key, "") >= pos:
            continue  # an older (or replayed) change never overwrites a newer one
        fence[key] = pos
        if row["_op"] == OP_DELETE:
            target.pop(key, None)
        elif row.get("_unsent.v"):
            target.setdefault(key, {"v": None})  # keep what the target has
        else:
            target[key] = {"v": row["v"]}


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 6), st.booleans(), st.booleans())
def test_key_changes_converge_and_replay_is_harmless(program, max_rows, full, toast):
    asm = ChangeAssembler(max_rows=max_rows, idle_table="public.t")
    batches = asm.feed(po.decode(f.relation(1, "public", "t", COLS, b"f" if full else b"d")))
    source: dict[int, dict] = {}
    lsn = 0x1000
    batches += asm.feed(po.decode(f.begin(lsn, 0, 1)))
    for kind, a, b, value, flush, commit in program:
        frame = None
        if kind == "insert" and a not in source:
            source[a] = {"v": value}
            frame = f.insert(1, [a, value])
        elif kind == "update" and a in source:
            source[a] = {"v": value}
            frame = f.update(1, [a, value])
        elif kind == "move" and a in source and b not in source:
            # an unchanged TOAST value is unsent in the new image; FULL sends the old row
            source[b] = source.pop(a)
            sent = "UNCHANGED" if toast and full else source[b]["v"]
            old = [a, source[b]["v"]] if full else [a, None]
            frame = f.update(1, [b, sent], old, b"O" if full else b"K")
        elif kind == "delete" and a in source:
            del source[a]
            frame = f.delete(1, [a, None])
        if frame is not None:
            batches += asm.feed(po.decode(frame))
        if flush:
            batches += asm.flush()
        if commit:
            batches += asm.feed(po.decode(f.commit(lsn, lsn + 0x10, 0)))
            lsn += 0x100
            batches += asm.feed(po.decode(f.begin(lsn, 0, 1)))
    batches += asm.feed(po.decode(f.commit(lsn, lsn + 0x10, 0)))
    batches += asm.flush()
    target: dict[int, dict] = {}
    fence: dict[int, str] = {}
    changes = [b for b in batches if b.num_rows]
    for batch in changes:
        apply(target, fence, batch)
    assert target == source
    for batch in changes:  # a replay after a crash
        apply(target, fence, batch)
    assert target == source
