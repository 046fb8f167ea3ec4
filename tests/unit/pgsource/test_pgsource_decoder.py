"""pgoutput decoding from byte fixtures: every message type, tuples, and error offsets."""

from __future__ import annotations

import pytest

from syncengine.errors import DecodeError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.wire import (
    Keepalive,
    XLogData,
    format_lsn,
    parse_copy_data,
    parse_lsn,
    standby_status,
)
from tests.unit.pgsource import pgsource_frames as f


def test_begin_commit_origin():
    assert po.decode(f.begin(0x1_0000_0010, 5, 77)) == po.Begin(0x1_0000_0010, 5, 77)
    assert po.decode(f.commit(10, 20, 30)) == po.Commit(0, 10, 20, 30)
    assert po.decode(f.origin(9, "upstream")) == po.Origin(9, "upstream")


def test_relation_and_type():
    rel = po.decode(f.relation(16384, "public", "t", [("id", 23, -1, True), ("v", 25, -1, False)]))
    assert rel == po.Relation(
        16384,
        "public",
        "t",
        "d",
        (po.Column("id", 23, -1, True), po.Column("v", 25, -1, False)),
    )
    assert rel.qualified == "public.t"
    assert po.decode(f.type_msg(16500, "public", "mood")) == po.TypeInfo(16500, "public", "mood")


def test_insert_update_delete_tuples():
    assert po.decode(f.insert(1, [1, None, "UNCHANGED", b"x\x00y"])) == po.Insert(
        1, (b"1", None, po.UNCHANGED, b"x\x00y")
    )
    assert po.decode(f.update(1, [2, "b"])) == po.Update(1, None, None, (b"2", b"b"))
    assert po.decode(f.update(1, [2, "b"], [1, "a"], b"O")) == po.Update(
        1, "O", (b"1", b"a"), (b"2", b"b")
    )
    assert po.decode(f.update(1, [2, "b"], [1, None], b"K")).old_kind == "K"
    assert po.decode(f.delete(1, [1, None])) == po.Delete(1, "K", (b"1", None))


def test_truncate_and_message():
    assert po.decode(f.truncate([1, 2], 3)) == po.Truncate(True, True, (1, 2))
    assert po.decode(f.message("wm", b"\x01\x02", 5, False)) == po.Message(
        False, 5, "wm", b"\x01\x02"
    )


def test_unchanged_is_not_null():
    new = po.decode(f.insert(1, ["UNCHANGED", None])).new
    assert new[0] is po.UNCHANGED and new[1] is None


@pytest.mark.parametrize(
    ("payload", "offset"),
    [
        (b"Z", 0),  # unknown type
        (f.begin(1, 2, 3)[:-1], 17),  # truncated xid
        (f.insert(1, [1]) + b"\x00", 14),  # trailing byte
        (b"I\x00\x00\x00\x01X", 5),  # bad tuple tag
        (b"I\x00\x00\x00\x01N\x00\x01q", 8),  # bad column kind
        (b"I\x00\x00\x00\x01N\x00\x01t\x00\x00\x00\x09ab", 13),  # value longer than frame
        (b"I\x00\x00\x00\x01N\xff\xff", 8),  # negative column count
    ],
)
def test_malformed_messages_name_the_offset(payload, offset):
    with pytest.raises(DecodeError) as info:
        po.decode(payload)
    assert info.value.offset == offset
    assert f"at offset {offset}" in str(info.value)


def test_copy_data_framing():
    frame = b"w" + (5).to_bytes(8, "big") + (9).to_bytes(8, "big") + (1).to_bytes(8, "big") + b"B.."
    assert parse_copy_data(frame) == XLogData(5, 9, 1, b"B..")
    ka = b"k" + (42).to_bytes(8, "big") + (7).to_bytes(8, "big") + b"\x01"
    assert parse_copy_data(ka) == Keepalive(42, 7, True)
    with pytest.raises(DecodeError):
        parse_copy_data(ka[:-1])
    status = standby_status(10, 8, 8, reply=True)
    assert status[0:1] == b"r" and len(status) == 34
    assert int.from_bytes(status[9:17], "big") == 8 and status[-1] == 1


def test_lsn_text_round_trip():
    assert format_lsn(0x1_0000_00AB) == "1/AB"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
