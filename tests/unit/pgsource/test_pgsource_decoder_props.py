"""Property tests: random bytes and truncated valid frames never hang or decode wrongly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.errors import DecodeError
from syncengine.sources.postgres import pgoutput as po
from tests.unit.pgsource import pgsource_frames as f

values = st.one_of(st.none(), st.just("UNCHANGED"), st.binary(max_size=20))
rows = st.lists(values, min_size=0, max_size=6)

valid_frames = st.one_of(
    st.builds(
        f.begin,
        st.integers(0, 2**64 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        f.commit, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**40)
    ),
    st.builds(f.insert, st.integers(0, 2**32 - 1), rows),
    st.builds(f.update, st.integers(0, 2**32 - 1), rows, st.one_of(st.none(), rows)),
    st.builds(f.delete, st.integers(0, 2**32 - 1), rows),
    st.builds(f.truncate, st.lists(st.integers(0, 2**32 - 1), max_size=5)),
    st.builds(f.message, st.text(alphabet="abc_", max_size=8), st.binary(max_size=30)),
    st.builds(
        f.relation,
        st.integers(0, 2**32 - 1),
        st.just("public"),
        st.text("xyz", min_size=1, max_size=5),
        st.lists(
            st.tuples(
                st.text("abc", min_size=1, max_size=4),
                st.integers(0, 2**32 - 1),
                st.integers(-1, 1000),
                st.booleans(),
            ),
            max_size=4,
        ),
    ),
)


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(data):
    try:
        message = po.decode(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        assert message is not None


@settings(max_examples=300)
@given(valid_frames, st.data())
def test_truncations_of_valid_frames_raise(frame, data):
    assert po.decode(frame) is not None  # the whole frame decodes
    cut = data.draw(st.integers(0, len(frame) - 1))
    try:
        po.decode(frame[:cut])
    except DecodeError as exc:
        assert 0 <= exc.offset <= cut
    else:  # pragma: no cover - a strict prefix must never decode as a whole message
        raise AssertionError(f"prefix of {len(frame)}-byte frame cut at {cut} decoded")


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), rows)
def test_tuple_values_round_trip(oid, row):
    decoded = po.decode(f.insert(oid, row))
    expected = tuple(None if v is None else po.UNCHANGED if v == "UNCHANGED" else v for v in row)
    assert decoded == po.Insert(oid, expected)
