"""Transactions applied under one of the engine's own replication origins (two-way sync) come
out as ECHO batches of their own, through both entry points (``feed`` and ``feed_payload``)."""

from __future__ import annotations

import pytest

from syncengine import tombstones
from syncengine.changes import ECHO, lsn_to_pos
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from tests.unit.pgsource import pgsource_frames as f

COLS = [("id", 23, -1, True), ("note", 25, -1, False)]


def user_txn_then(xid: int, origin: str) -> list[bytes]:
    """A user's transaction, then the head of one applied under ``origin``."""
    return [
        f.relation(10, "public", "t", COLS),
        f.begin(0x100, 0, 7),
        f.insert(10, [1, "user"]),
        f.commit(0x100, 0x180, 0),
        f.begin(0x200, 0, xid),
        f.origin(0x55, origin),
    ]


def run(asm: ChangeAssembler, frames: list[bytes], direct: bool) -> list:
    out = []
    for frame in frames:
        out.extend(asm.feed_payload(frame) if direct else asm.feed(po.decode(frame)))
    return out + asm.flush(idle=True)


@pytest.mark.parametrize("direct", [False, True])
def test_own_origin_rows_are_echo_batches_and_others_are_not(direct):
    asm = ChangeAssembler(max_rows=100, own_origins=frozenset({"syncengine_p_reverse"}))
    frames = [
        *user_txn_then(8, "syncengine_p_reverse"),
        f.insert(10, [2, "engine"]),
        f.update(10, [1, "engine"]),
        f.commit(0x200, 0x280, 0),
        f.begin(0x300, 0, 9),
        f.origin(0x66, "someone_else"),
        f.insert(10, [3, "other replicator"]),
        f.commit(0x300, 0x380, 0),
    ]
    batches = [b for b in run(asm, frames, direct) if b.num_rows]
    shape = [(b.meta.get(ECHO, False), b.data.column("id").to_pylist()) for b in batches]
    assert shape == [(False, [1]), (True, [2, 1]), (False, [3])]
    # the echo transaction's commit is a resume like any other: the checkpoint moves past it
    assert batches[1].meta["resume"] == lsn_to_pos(0x280)


def test_a_big_echo_transaction_is_cut_into_echo_batches_only():
    asm = ChangeAssembler(max_rows=2, own_origins=frozenset({"mine"}))
    frames = [
        *user_txn_then(8, "mine"),
        *[f.insert(10, [i, "engine"]) for i in range(10, 15)],
        f.commit(0x200, 0x280, 0),
    ]
    batches = [b for b in run(asm, frames, True) if b.num_rows]
    assert [b.meta.get(ECHO, False) for b in batches] == [False, True, True, True]
    assert sum(b.num_rows for b in batches[1:]) == 5
    assert "resume" not in batches[1].meta and batches[-1].meta["resume"] == lsn_to_pos(0x280)


@pytest.mark.parametrize("direct", [False, True])
def test_ignored_origin_rows_are_dropped_and_the_resume_still_moves(direct):
    """A mesh: another node's writes into this one are neither applied nor echoes."""
    asm = ChangeAssembler(
        max_rows=100, own_origins=frozenset({"sibling"}), ignore_origins=frozenset({"third"})
    )
    frames = [
        *user_txn_then(8, "third"),
        f.insert(10, [2, "carried in from a third node"]),
        f.update(10, [1, "carried in from a third node"]),
        f.delete(10, [1, None]),
        f.commit(0x200, 0x280, 0),
        f.begin(0x300, 0, 9),
        f.origin(0x66, "sibling"),
        f.insert(10, [3, "echo"]),
        f.commit(0x300, 0x380, 0),
        f.begin(0x400, 0, 10),
        f.insert(10, [4, "user"]),
        f.commit(0x400, 0x480, 0),
        f.begin(0x500, 0, 11),
        f.origin(0x77, "third"),
        f.insert(10, [5, "carried in, last"]),
        f.commit(0x500, 0x580, 0),
    ]
    out = run(asm, frames, direct)
    shape = [(b.meta.get(ECHO, False), b.data.column("id").to_pylist()) for b in out if b.num_rows]
    assert shape == [(False, [1]), (True, [3]), (False, [4])]
    # the last transaction is dropped, but its commit is still handed out as a resume
    assert [b.meta["resume"] for b in out if "resume" in b.meta][-1] == lsn_to_pos(0x580)


@pytest.mark.parametrize("direct", [False, True])
def test_a_siblings_tombstone_note_becomes_echo_deletes(direct):
    """A mesh direction's delete that found no row writes nothing but a note; the sibling's
    reader turns it into echo deletes of those keys (syncengine.tombstones). The same note
    outside the sibling's transactions is nothing."""
    note = tombstones.encode("public.t", ['{"id":5}', '{"id":6}', '{"nope":1}'])
    asm = ChangeAssembler(max_rows=100, own_origins=frozenset({"sibling"}))
    frames = [
        *user_txn_then(8, "sibling"),
        f.message(tombstones.PREFIX, note),
        f.commit(0x200, 0x280, 0),
        f.begin(0x300, 0, 9),
        f.message(tombstones.PREFIX, note),
        f.commit(0x300, 0x380, 0),
    ]
    batches = [b for b in run(asm, frames, direct) if b.num_rows]
    shape = [
        (b.meta.get(ECHO, False), b.data.column("_op").to_pylist(), b.data.column("id").to_pylist())
        for b in batches
    ]
    assert shape == [(False, ["c"], [1]), (True, ["d", "d"], [5, 6])]
    assert batches[1].data.column("note").to_pylist() == [None, None]


def test_tombstone_keys_as_pgoutput_text():
    assert tombstones.key_tuple(["id", "note"], {"id": 7}) == (b"7", None)
    assert tombstones.key_tuple(["a", "b"], {"a": "x", "b": True}) == (b"x", b"t")
    assert tombstones.key_tuple(["id"], {"other": 1}) is None
    assert tombstones.decode(b"not json") == ("", [])
