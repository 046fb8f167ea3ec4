"""Hostile replication bytes: the pgoutput decoder never crashes and never yields wrong rows.

tests/unit/pgsource already checks random bytes, truncations and one round trip. Added here:

* mutations of *valid* messages (bit flips, overwritten, inserted, deleted and duplicated
  bytes, length fields set to extremes, two messages spliced) — the inputs most likely to
  slip through a decoder, because most of their bytes are right;
* differential checking against an independent reference decoder (``rel_pgwire``): whenever
  syncengine's decoder accepts bytes, the reference must accept them too and agree on every
  value. So a mangled frame either raises ``DecodeError`` or means exactly what it says;
* every message kind with unicode names, every replica identity, binary-looking values;
* the CopyData framing (``parse_copy_data``) and the assembler fed shuffled, mismatched
  message sequences: only ``SyncEngineError`` subclasses, never IndexError/KeyError.
"""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncengine.errors import DecodeError, SyncEngineError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.sources.postgres.wire import parse_copy_data
from tests.reliability import rel_pgwire as ref
from tests.reliability.rel_support import record, size

EXAMPLES = size("SYNCENGINE_FUZZ_EXAMPLES", 300)
TRIED = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """Figures for the README: the inputs the properties tried (recorded at the end)."""
    yield
    record("decoder_fuzz", inputs=sum(TRIED.values()))


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
value = st.one_of(st.none(), st.just("u"), st.binary(max_size=40))
row = st.lists(value, max_size=8).map(tuple)
columns = st.lists(
    st.tuples(names, u32, st.integers(-(2**31), 2**31 - 1), st.booleans()), max_size=6
).map(tuple)

messages = st.one_of(
    st.tuples(st.just("B"), u64, st.integers(-(2**63), 2**63 - 1), u32),
    st.tuples(st.just("C"), u64, u64, st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("O"), u64, names),
    st.tuples(
        st.just("R"),
        u32,
        names.filter(bool),
        names,
        st.sampled_from("dnfi"),
        columns,
    ),
    st.tuples(st.just("Y"), u32, names, names),
    st.tuples(st.just("I"), u32, row),
    st.one_of(
        st.tuples(st.just("U"), u32, st.none(), st.none(), row),
        st.tuples(st.just("U"), u32, st.sampled_from("KO"), row, row),
    ),
    st.tuples(st.just("D"), u32, st.sampled_from("KO"), row),
    st.tuples(st.just("T"), st.booleans(), st.booleans(), st.lists(u32, max_size=6).map(tuple)),
    st.tuples(st.just("M"), st.booleans(), u64, names, st.binary(max_size=40)),
)

EXTREMES = [b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x00"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[tuple, bytes]:
    """A valid message and a mangled copy of its bytes."""
    message = draw(messages)
    data = bytearray(ref.encode(message))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "extreme", "splice"]))
        at = draw(st.integers(0, len(data)))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 6))]
        elif how == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 8))]
        elif how == "extreme":
            data[at : at + 4] = draw(st.sampled_from(EXTREMES))
        elif how == "splice":
            other = ref.encode(draw(messages))
            data = data[:at] + bytearray(other[draw(st.integers(0, len(other))) :])
    return message, bytes(data)


def decodes_like_reference(data: bytes) -> bool:
    """True when accepted (and then equal to the reference), False when rejected."""
    try:
        got = po.decode(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data), f"offset {exc.offset} outside {len(data)} bytes"
        return False
    try:
        expected = ref.reference_decode(data)
    except ref.Malformed as exc:
        raise AssertionError(
            f"decoder accepted malformed bytes ({exc}): {data!r} -> {got}"
        ) from None
    assert ref.normalize(got) == expected, f"{data!r}: decoder {got} != reference {expected}"
    return True


@FUZZ
@given(messages)
def test_every_valid_message_decodes_exactly(message):
    TRIED["x"] += 1
    data = ref.encode(message)
    assert ref.normalize(po.decode(data)) == ref.reference_decode(data)


@FUZZ
@given(mutated())
def test_mutated_messages_raise_decode_error_or_decode_exactly(case):
    TRIED["x"] += 1
    _, data = case
    decodes_like_reference(data)


@FUZZ
@given(messages, st.binary(min_size=1, max_size=16))
def test_trailing_garbage_is_refused(message, tail):
    TRIED["x"] += 1
    data = ref.encode(message) + tail
    try:
        po.decode(data)
    except DecodeError:
        return
    raise AssertionError(f"decoded {data!r} with {len(tail)} trailing bytes")


@FUZZ
@given(
    st.one_of(
        st.builds(
            lambda s, e, t, p: b"w" + struct.pack("!QQq", s, e, t) + p,
            u64,
            u64,
            st.integers(-(2**63), 2**63 - 1),
            st.binary(max_size=30),
        ),
        st.builds(
            lambda e, t, r: b"k" + struct.pack("!Qq", e, t) + bytes([r]),
            u64,
            st.integers(-(2**63), 2**63 - 1),
            st.integers(0, 255),
        ),
        st.binary(max_size=40),
    ),
    st.integers(0, 40),
)
def test_copy_data_framing_never_crashes(frame, cut):
    TRIED["x"] += 1
    for data in (frame, frame[:cut]):
        try:
            parsed = parse_copy_data(data)
        except DecodeError:
            continue
        if data[:1] == b"w":
            assert parsed.payload == data[25:]
        else:
            assert len(data) == 18 and parsed.reply == bool(data[17])


relation_oids = st.sampled_from([1, 2, 3])
stream_messages = st.one_of(
    st.tuples(st.just("B"), u64, st.integers(0, 2**40), u32),
    st.tuples(st.just("C"), u64, u64, st.integers(0, 2**40)),
    st.tuples(
        st.just("R"),
        relation_oids,
        st.just("public"),
        st.sampled_from(["a", "b"]),
        st.sampled_from("dfn"),
        st.lists(
            st.tuples(
                st.sampled_from(["id", "x", "y"]),
                st.sampled_from([20, 23, 25, 16, 1700]),
                st.just(-1),
                st.booleans(),
            ),
            min_size=0,
            max_size=3,
            unique_by=lambda c: c[0],
        ).map(tuple),
    ),
    st.tuples(st.just("I"), relation_oids, row),
    st.tuples(st.just("U"), relation_oids, st.sampled_from("KO"), row, row),
    st.tuples(st.just("U"), relation_oids, st.none(), st.none(), row),
    st.tuples(st.just("D"), relation_oids, st.sampled_from("KO"), row),
    st.tuples(
        st.just("T"), st.booleans(), st.booleans(), st.lists(relation_oids, max_size=3).map(tuple)
    ),
)


@FUZZ
@given(st.lists(stream_messages, max_size=25), st.integers(1, 5), st.booleans())
@example(  # found by the long run: a value that is not UTF-8 (a SQL_ASCII database)
    sequence=[
        ("B", 0, 0, 0),
        ("R", 3, "public", "a", "d", (("id", 20, -1, False),)),
        ("I", 3, (b"\x80",)),
    ],
    max_rows=1,
    fast=True,
)
def test_assembler_survives_hostile_message_sequences(sequence, max_rows, fast):
    """Rows before their Relation, tuples of the wrong width, values that are not numbers,
    commits without begins: errors are SyncEngineErrors (the daemon handles those), never
    IndexError/KeyError/ValueError from inside. Both entry points: decoded messages, and the
    stream's ``feed_payload`` (rows decoded straight into column buffers)."""
    TRIED["x"] += 1
    asm = ChangeAssembler(max_rows=max_rows)
    try:
        for message in sequence:
            payload = ref.encode(message)
            if fast:
                asm.feed_payload(payload)
            else:
                asm.feed(po.decode(payload))
        asm.flush()
    except SyncEngineError:
        pass
