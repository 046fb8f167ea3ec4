"""Assembling decoded messages into ChangeBatches: types, unsent, before-images, resumes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from syncengine.changes import lsn_to_pos
from syncengine.errors import DecodeError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.sources.postgres.moved import moved_rows
from tests.unit.pgsource import pgsource_frames as f

COLS = [
    ("id", 23, -1, True),
    ("amount", 1700, ((12 << 16) | 2) + 4, False),
    ("note", 25, -1, False),
]


def feed(asm: ChangeAssembler, *frames: bytes):
    out = []
    for frame in frames:
        out.extend(asm.feed(po.decode(frame)))
    return out


def test_one_transaction_becomes_one_batch_with_resume():
    asm = ChangeAssembler(max_rows=100)
    got = feed(
        asm,
        f.relation(10, "public", "t", COLS),
        f.begin(0x100, 0, 7),
        f.insert(10, [1, "1.50", "a"]),
        f.update(10, [1, "2.00", "UNCHANGED"]),
        f.delete(10, [1, None, None]),
        f.commit(0x100, 0x180, 0),
    )
    assert got == []
    (batch,) = asm.flush()
    assert batch.table == "public.t" and batch.key == ("id",)
    assert batch.meta["resume"] == lsn_to_pos(0x180)
    assert batch.data.column("_op").to_pylist() == ["c", "u", "d"]
    assert batch.data.column("amount").to_pylist() == [Decimal("1.50"), Decimal("2.00"), None]
    assert batch.data.column("_unsent.note").to_pylist() == [False, True, False]
    assert batch.data.column("note").to_pylist() == ["a", None, None]
    assert batch.data.column("_txid").to_pylist() == [7, 7, 7]
    pos = batch.data.column("_pos").to_pylist()
    assert pos == sorted(pos) and len(set(pos)) == 3 and pos[-1] < lsn_to_pos(0x180)
    field = batch.data.schema.field("amount")
    assert field.metadata == {b"pg_type": b"numeric(12,2)"}
    assert batch.data.column("_before.id").to_pylist() == [None, None, 1]


def test_big_transaction_is_cut_without_resume_until_commit():
    asm = ChangeAssembler(max_rows=2)
    head = feed(asm, f.relation(10, "public", "t", COLS), f.begin(0x200, 0, 8))
    assert head == []
    cuts = feed(asm, *[f.insert(10, [i, "1", "x"]) for i in range(5)])
    assert [len(b) for b in cuts] == [2, 2]
    assert all("resume" not in b.meta for b in cuts)
    assert asm.pending_rows == 1
    feed(asm, f.commit(0x200, 0x280, 0))
    (last,) = asm.flush()
    assert len(last) == 1 and last.meta["resume"] == lsn_to_pos(0x280)


def test_mid_transaction_cut_carries_previous_boundary_only():
    asm = ChangeAssembler(max_rows=2)
    feed(
        asm,
        f.relation(10, "public", "t", COLS),
        f.begin(0x100, 0, 1),
        f.insert(10, [1, "1", "x"]),
        f.commit(0x100, 0x150, 0),
        f.begin(0x300, 0, 2),
    )
    # the previous boundary travels with txn 1's row only; txn 2's row comes after, without one
    done, open_ = feed(asm, f.insert(10, [2, "1", "x"]))
    assert done.data.column("id").to_pylist() == [1] and done.meta["resume"] == lsn_to_pos(0x150)
    assert open_.data.column("id").to_pylist() == [2] and "resume" not in open_.meta
    feed(asm, f.commit(0x300, 0x350, 0))
    assert asm.flush() == []  # nothing pending and not idle: no empty batch
    (idle,) = asm.flush(idle=True)
    assert len(idle) == 0 and idle.meta["resume"] == lsn_to_pos(0x350)
    assert asm.flush(idle=True) == []


def test_relation_change_starts_a_new_schema():
    asm = ChangeAssembler(max_rows=100)
    feed(
        asm,
        f.relation(10, "public", "t", COLS[:2]),
        f.begin(0x100, 0, 1),
        f.insert(10, [1, "1"]),
        f.commit(0x100, 0x150, 0),
    )
    (before,) = feed(asm, f.relation(10, "public", "t", COLS))
    assert (
        before.data.column_names[:2] == ["id", "amount"] and "note" not in before.data.column_names
    )
    assert "resume" not in before.meta
    feed(asm, f.begin(0x200, 0, 2), f.insert(10, [2, "3", "n"]), f.commit(0x200, 0x250, 0))
    (after,) = asm.flush()
    assert after.data.column("note").to_pylist() == ["n"] and after.meta["resume"] == lsn_to_pos(
        0x250
    )


def test_same_relation_resent_keeps_buffer():
    asm = ChangeAssembler(max_rows=100)
    feed(asm, f.relation(10, "public", "t", COLS), f.begin(1, 0, 1), f.insert(10, [1, "1", "a"]))
    assert feed(asm, f.relation(10, "public", "t", COLS)) == []
    assert asm.pending_rows == 1


def test_truncate_enum_and_before_image():
    asm = ChangeAssembler(max_rows=100, keys={"s.e": ("id",)})
    cols = [("id", 23, -1, True), ("mood", 16500, -1, True)]
    feed(
        asm,
        f.type_msg(16500, "public", "mood"),
        f.relation(11, "s", "e", cols, b"f"),
        f.begin(0x10, 0, 3),
        f.update(11, [1, "sad"], [1, "ok"], b"O"),
        f.truncate([11]),
        f.commit(0x10, 0x20, 0),
    )
    (batch,) = asm.flush()
    assert batch.key == ("id",)  # from the catalog, not the FULL identity flags
    assert batch.data.column("_op").to_pylist() == ["u", "t"]
    assert batch.data.column("_before.mood").to_pylist() == ["ok", None]
    assert batch.data.schema.field("mood").metadata == {b"pg_type": b"mood"}


def test_change_for_unknown_relation_or_wrong_width_fails():
    asm = ChangeAssembler(max_rows=10)
    feed(asm, f.begin(1, 0, 1))
    with pytest.raises(DecodeError):
        feed(asm, f.insert(99, [1]))
    feed(asm, f.relation(10, "public", "t", COLS))
    with pytest.raises(DecodeError):
        feed(asm, f.insert(10, [1]))


def test_key_change_becomes_delete_of_old_key_then_update_of_new():
    asm = ChangeAssembler(max_rows=100)
    feed(
        asm,
        f.relation(10, "public", "t", COLS),
        f.begin(0x100, 0, 7),
        f.update(10, [2, "1.50", "UNCHANGED"], [1, None, None], b"K"),  # DEFAULT: old key only
        f.update(10, [2, "3.00", "b"], [2, None, None], b"K"),  # same key: a plain update
        f.update(10, [3, "3.00", "UNCHANGED"], [2, "3.00", "b"], b"O"),  # FULL: the old row
        f.commit(0x100, 0x180, 0),
    )
    (batch,) = asm.flush()
    data = batch.data
    assert data.column("_op").to_pylist() == ["d", "u", "u", "d", "u"]
    assert data.column("id").to_pylist() == [1, 2, 2, 2, 3]
    assert data.column("_before.id").to_pylist() == [1, 1, 2, 2, 2]
    pos = data.column("_pos").to_pylist()
    assert pos == sorted(pos) and len(set(pos)) == 5  # the delete comes first
    # DEFAULT: the unsent value stays unsent (never a NULL); FULL: the old row's value
    assert data.column("note").to_pylist() == [None, None, "b", "b", "b"]
    assert data.column("_unsent.note").to_pylist() == [False, True, False, False, False]
    assert moved_rows(batch) == [1]  # the one the reader reads back from the source
