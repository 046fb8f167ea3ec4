"""The stream's fast path (``feed_payload``: row messages kept as bytes and decoded together when
their batch is cut, :mod:`.rowdecode`) against the message path (``feed(decode(payload))``): the
same batches for valid sequences; for sequences with mangled row messages, an error on both
paths, the fast path having emitted no more than the message path did before its error (it
finds a malformed row at the cut, not on arrival)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import ChangeBatch
from syncengine.errors import DecodeError, SyncEngineError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from tests.unit.pgsource import pgsource_frames as f

COLS = [("id", 23, -1, True), ("v", 25, -1, False), ("n", 20, -1, False)]
value = st.one_of(st.none(), st.just("UNCHANGED"), st.integers(-5, 5).map(str))
row = st.tuples(st.integers(1, 9).map(str), value, st.one_of(st.none(), st.integers(0, 9)))
change = st.one_of(
    st.tuples(st.just("I"), st.sampled_from([1, 2]), row),
    st.tuples(st.just("U"), st.sampled_from([1, 2]), row),
    st.tuples(st.just("UO"), st.sampled_from([1, 2]), row),
    st.tuples(st.just("D"), st.sampled_from([1, 2]), row),
    st.tuples(st.just("DO"), st.sampled_from([1, 2]), row),
    st.tuples(st.just("X"), st.sampled_from([1, 2, 3]), row),  # unknown relation 3
)
mangle = st.one_of(
    st.none(),
    st.tuples(st.just("cut"), st.integers(0, 40)),
    st.tuples(st.just("flip"), st.integers(0, 40), st.integers(0, 255)),
    st.tuples(st.just("extra"), st.binary(min_size=1, max_size=3)),
)


def _payload(kind: str, oid: int, values: tuple[object, ...]) -> bytes:
    key = [values[0], None, None]
    if kind == "I" or kind == "X":
        return f.insert(oid, list(values))
    if kind == "U":
        return f.update(oid, list(values))
    if kind == "UO":
        return f.update(oid, list(values), old=key, kind=b"K")
    if kind == "D":
        return f.delete(oid, key, kind=b"K")
    return f.delete(oid, list(values), kind=b"O")


def _mangled(payload: bytes, how: tuple[object, ...] | None) -> bytes:
    if how is None:
        return payload
    if how[0] == "cut":
        return payload[: int(how[1]) % (len(payload) + 1)]  # type: ignore[call-overload]
    if how[0] == "flip":
        at = int(how[1]) % len(payload)  # type: ignore[call-overload]
        return payload[:at] + bytes([int(how[2])]) + payload[at + 1 :]  # type: ignore[call-overload]
    return payload + bytes(how[1])  # type: ignore[arg-type]


def _run(payloads: list[bytes], path: str, max_rows: int) -> list[object]:
    """Every batch as plain data, then the error (if any) as its type. ``path``: ``message``
    (``feed(decode(payload))``), ``payload`` (``feed_payload``) or ``wire`` (the messages as
    XLogData, taken by ``take_rows`` as the stream takes them)."""
    asm = ChangeAssembler(max_rows, {"public.t1": ("id",)}, idle_table="public.t1")
    out: list[object] = []

    def emit(batches: list[ChangeBatch]) -> None:
        out.extend((b.table, b.key, b.meta, b.data.to_pylist(), b.data.schema) for b in batches)

    try:
        if path == "wire":
            _take(asm, payloads, emit)
        for payload in payloads if path != "wire" else []:
            emit(asm.feed_payload(payload) if path == "payload" else asm.feed(po.decode(payload)))
        out += [(b.table, b.meta, b.data.to_pylist()) for b in asm.flush(idle=True)]
    except SyncEngineError as exc:  # DecodeError, or FatalError for a value that is not UTF-8
        out.append(type(exc))
    return out


def _take(
    asm: ChangeAssembler, payloads: list[bytes], emit: Callable[[list[ChangeBatch]], None]
) -> None:
    """The stream's loop: ``take_rows`` reads on; the message it stops at goes to
    ``feed_payload``. Each payload comes as an XLogData (a 25-byte header first), as libpq
    returns it."""
    header = struct.Struct("!cQQq")
    wire = iter([header.pack(b"w", 0x100 + i, 0x200 + i, 0) + p for i, p in enumerate(payloads)])

    def read(_async: int) -> tuple[int, memoryview]:
        message = next(wire, None)
        return (0, memoryview(b"")) if message is None else (len(message), memoryview(message))

    while True:
        batches, size, data, _ = asm.take_rows(read)
        emit(list(batches))
        if size:
            emit(asm.feed_payload(bytes(data[header.size :])))
        elif not batches:
            return  # nothing more to read


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.tuples(change, mangle), max_size=10), min_size=1, max_size=5),
    st.integers(1, 6),
)
def test_fast_path_equals_message_path(txns, max_rows):
    payloads = _stream(txns)
    fast, slow = _run(payloads, "payload", max_rows), _run(payloads, "message", max_rows)
    if not slow or not isinstance(slow[-1], type):
        assert fast == slow
    else:
        assert fast and isinstance(fast[-1], type), "the fast path missed an error"
        assert fast[:-1] == slow[: len(fast) - 1]
    # what the stream takes off the wire is what it would feed message by message
    assert _run(payloads, "wire", max_rows) == fast


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(change, max_size=30), min_size=1, max_size=5), st.integers(1, 12))
def test_wire_path_equals_message_path(txns, max_rows):
    """Well-formed streams (most of the mangled ones above end at their first error); only a
    row of an unknown relation ("X") is an error."""
    payloads = _stream([[(c, None) for c in changes] for changes in txns])
    taken = _run(payloads, "wire", max_rows)
    assert taken == _run(payloads, "message", max_rows)
    if all(kind != "X" for changes in txns for kind, _, _ in changes):
        assert taken and not isinstance(taken[-1], type)


def _stream(txns: list[list[tuple[tuple[str, int, tuple[object, ...]], object]]]) -> list[bytes]:
    """Two relations, then each transaction's (possibly mangled) changes between Begin and
    Commit."""
    payloads = [f.relation(1, "public", "t1", COLS), f.relation(2, "public", "t2", COLS)]
    lsn = 0x1000
    for changes in txns:
        payloads.append(f.begin(lsn + 0x80, 0, 7))
        for (kind, oid, values), how in changes:
            payloads.append(_mangled(_payload(kind, oid, values), how))  # type: ignore[arg-type]
        payloads.append(f.commit(lsn + 0x80, lsn + 0x90, 0))
        lsn += 0x100
    return payloads


def test_malformed_row_raises_at_the_cut_with_its_offset():
    asm = ChangeAssembler(100, {"public.t1": ("id",)})
    asm.feed_payload(f.relation(1, "public", "t1", COLS))
    asm.feed_payload(f.begin(0x2000, 0, 7))
    asm.feed_payload(f.insert(1, ["1", "a", "10"]))
    bad = f.insert(1, ["2", "bb", "20"])
    asm.feed_payload(bad[:-1])  # the last value is cut short: kept as bytes until the cut
    with pytest.raises(DecodeError, match="row message 1 of the batch: truncated value") as caught:
        asm.flush()
    assert caught.value.offset is not None and caught.value.offset > 6


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (f.insert(1, ["2", "bb", "20"]) + b"\x00", "1 unexpected trailing bytes after 'I'"),
        (f.insert(1, ["3", "c"]), "tuple has 2 columns, relation has 3"),
        (f.insert(1, ["3", "c", "1"])[:-6] + b"x" + f.insert(1, ["3", "c", "1"])[-5:], "kind 120"),
        (b"D" + f.insert(1, ["3", "c", "1"])[1:], "unexpected tuple tag"),
    ],
)
def test_each_malformed_row_is_named(payload, message):
    asm = ChangeAssembler(100, {"public.t1": ("id",)})
    asm.feed_payload(f.relation(1, "public", "t1", COLS))
    asm.feed_payload(f.begin(0x2000, 0, 7))
    asm.feed_payload(f.insert(1, ["1", "a", "10"]))
    asm.feed_payload(payload)
    with pytest.raises(DecodeError, match=message):
        asm.flush()


def test_rows_around_an_old_image_update_keep_their_order_and_positions():
    asm = ChangeAssembler(100, {"public.t1": ("id",)})
    asm.feed_payload(f.relation(1, "public", "t1", COLS))
    asm.feed_payload(f.begin(0x2000, 0, 7))
    asm.feed_payload(f.insert(1, ["1", "a", "10"]))
    asm.feed_payload(f.update(1, ["2", "b", "UNCHANGED"], old=["1", "a", "10"], kind=b"O"))
    asm.feed_payload(f.update(1, ["2", "c", "UNCHANGED"], old=["2", "b", "10"], kind=b"O"))
    asm.feed_payload(f.delete(1, ["2", None, None]))
    asm.feed_payload(f.commit(0x2000, 0x2010, 0))
    (batch,) = asm.flush()
    rows = batch.data.select(["id", "v", "n", "_op", "_pos", "_before.id"]).to_pylist()
    pos = "0000000000002000."
    assert rows == [
        {"id": 1, "v": "a", "n": 10, "_op": "c", "_pos": pos + "00000000", "_before.id": None},
        # the key moved: a delete of the old key, then the update (unsent n from the old row)
        {"id": 1, "v": "a", "n": 10, "_op": "d", "_pos": pos + "00000001", "_before.id": 1},
        {"id": 2, "v": "b", "n": 10, "_op": "u", "_pos": pos + "00000002", "_before.id": 1},
        # same key: one row, still two positions taken
        {"id": 2, "v": "c", "n": None, "_op": "u", "_pos": pos + "00000004", "_before.id": 2},
        {"id": 2, "v": None, "n": None, "_op": "d", "_pos": pos + "00000005", "_before.id": 2},
    ]
    assert batch.data.column("_unsent.n").to_pylist() == [False, False, False, True, False]
