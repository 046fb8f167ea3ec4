"""Fan-out's pure parts: the partition hash, the message format and the consumer's reassembly
of the reader's groups (no NATS server needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import AT_RESUME, ChangeBatch, lsn_to_pos
from syncengine.cluster.fanout.assembler import Assembler, parse_position, position
from syncengine.cluster.fanout.partition import partitions_of, stable_hash
from syncengine.cluster.fanout.wire import (
    GROUP,
    MSG_ID,
    checkpoint_message,
    decode,
    encode,
)
from syncengine.sources.base import resume_position

#: pinned: a key must land in the same partition in every process and every release
EXPECTED = {
    '{"id":1}': 0xB9A346C1F4E57D56,
    '{"id":2}': 0x19B74C4908C20BBC,
    '{"id":3}': 0x8EC408D67FA3916A,
    '{"id":"a"}': 0xA9EC1F3B6165D967,
    "": 0,
    "é": None,  # checked against the reference below
}


def reference_hash(text: str) -> int:
    """The definition, one byte at a time: what the vectorized hash must equal."""
    mask = (1 << 64) - 1
    data = text.encode()
    h = 0
    for byte in data:
        h = (h * 0x100000001B3 + byte) & mask
    h ^= len(data)
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h ^= h >> 33
        h = (h * multiplier) & mask
    return h ^ (h >> 33)


def batch(ids: list[int], positions: list[int], table: str = "public.t") -> ChangeBatch:
    rows = pa.table({"id": pa.array(ids, pa.int64()), "v": [f"v{i}" for i in ids]})
    return ChangeBatch.build(
        table, rows, ops=["u"] * len(ids), positions=[lsn_to_pos(p) for p in positions],
        key=["id"],
    )  # fmt: skip


def test_the_hash_is_pinned():
    hashes = stable_hash(pa.array(list(EXPECTED)))
    assert hashes.dtype == np.uint64
    for (text, pinned), got in zip(EXPECTED.items(), hashes.tolist(), strict=True):
        assert got == reference_hash(text)
        assert pinned is None or got == pinned


@settings(deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=30))
def test_the_vectorized_hash_is_the_definition(texts):
    array = pa.array(texts).slice(0)  # also through a sliced, chunked input
    chunked = pa.chunked_array([array[: len(texts) // 2], array[len(texts) // 2 :]])
    assert stable_hash(chunked).tolist() == [reference_hash(t) for t in texts]


@settings(deadline=None, max_examples=50)  # a Polars call per key: slow on a busy machine
@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=60))
def test_a_key_lands_in_one_partition_whatever_batch_carries_it(ids):
    whole = batch(ids, list(range(1, len(ids) + 1)))
    parts = partitions_of(whole.data, whole.key, 5)
    for i, key in enumerate(ids):
        alone = batch([key], [1])
        assert partitions_of(alone.data, alone.key, 5)[0] == parts[i]


def test_keys_spread_over_the_partitions():
    ids = list(range(10_000))
    parts = partitions_of(batch(ids, ids).data, ("id",), 4)
    counts = np.bincount(parts, minlength=4)
    assert counts.min() > 2_000, counts


def test_keyless_rows_keep_one_partition():
    data = batch([1, 2, 3], [1, 2, 3]).data
    assert partitions_of(data, (), 4).tolist() == [0, 0, 0]


def test_a_message_carries_its_batch_and_its_id_is_a_function_of_its_content():
    sent = batch([1, 2, 3], [10, 11, 12])
    sent = ChangeBatch(sent.table, sent.data, sent.key, {AT_RESUME: True, "resume": "x"})
    (message,) = encode("s", sent, 2, lsn_to_pos(12), 1 << 20)
    assert message.subject == "s.p2"
    assert message.headers[GROUP] == lsn_to_pos(12)
    part = decode(message.headers, message.payload)
    assert part.batch.data.equals(sent.data)
    assert part.batch.meta == {AT_RESUME: True}  # the reader's own facts stay behind
    assert (part.group, part.slot, part.batch.key) == (lsn_to_pos(12), ("public.t", 2, 0), ("id",))
    (again,) = encode("s", sent, 2, lsn_to_pos(12), 1 << 20)
    assert again.headers[MSG_ID] == message.headers[MSG_ID]
    (other,) = encode("s", batch([1, 2, 4], [10, 11, 12]), 2, lsn_to_pos(12), 1 << 20)
    assert other.headers[MSG_ID] != message.headers[MSG_ID]


def test_a_batch_larger_than_the_server_takes_is_cut_into_chunks():
    big = batch(list(range(5_000)), list(range(5_000)))
    messages = encode("s", big, 0, None, 16_384)
    assert len(messages) > 1
    assert all(len(m.payload) <= 16_384 for m in messages)
    parts = [decode(m.headers, m.payload) for m in messages]
    assert [p.slot[2] for p in parts] == list(range(len(messages)))
    assert pa.concat_tables([p.batch.data for p in parts]).equals(big.data)
    assert all(p.group is None for p in parts)


def part(ids: list[int], positions: list[int], partition: int, group: int | None):
    (message,) = encode(
        "s", batch(ids, positions), partition, None if group is None else lsn_to_pos(group), 1 << 20
    )
    return decode(message.headers, message.payload)


def test_a_group_is_handed_on_whole_at_its_checkpoint_in_source_order():
    assembler = Assembler()
    assert assembler.data(1, part([1, 4], [10, 13], 0, 13)) == []
    assert assembler.data(2, part([2], [11], 1, 13)) == []
    out = assembler.checkpoint(3, lsn_to_pos(13))
    assert len(out) == 1
    assert out[0].data.column("id").to_pylist() == [1, 2, 4]  # by _pos across partitions
    assert resume_position(out[0]) == position(lsn_to_pos(13), 3)


def test_an_unfinished_group_is_dropped_and_a_repeated_message_counts_once():
    assembler = Assembler()
    assembler.data(1, part([1], [10], 0, 12))  # the reader died before this group's end
    assembler.data(2, part([1], [10], 0, 11))  # its successor cut the changes otherwise
    assembler.data(3, part([1], [10], 0, 11))  # published again after the dedup window
    assembler.data(4, part([2], [11], 1, 11))
    out = assembler.checkpoint(5, lsn_to_pos(11))
    assert sorted(out[0].data.column("id").to_pylist()) == [1, 2]
    assert assembler.dropped == 2


def test_snapshot_parts_pass_at_once_and_an_empty_group_still_moves_the_checkpoint():
    assembler = Assembler(idle_table="public.t")
    (snap,) = assembler.data(1, part([1, 2], [5, 5], 0, None))
    assert resume_position(snap) == position("", 1)
    (idle,) = assembler.checkpoint(2, lsn_to_pos(5))
    assert (idle.table, idle.num_rows, resume_position(idle)) == (
        "public.t",
        0,
        position(lsn_to_pos(5), 2),
    )


def test_a_consumer_position_compares_with_row_positions_as_its_source_position():
    """A Postgres target drops changes at or below its checkpoint: the fan-out position must
    drop exactly the rows at or below the source position it names."""
    at = position(lsn_to_pos(0x1000), 987654)
    assert lsn_to_pos(0x1000) <= at < lsn_to_pos(0x1001)
    assert "" < position("", 5) < lsn_to_pos(0)
    token = "8266A1B2C3"  # a Mongo resume token that extends another
    assert token + "00" > position(token, 1) > token
    assert parse_position(at) == (lsn_to_pos(0x1000), 987654)
    assert parse_position(None) == ("", 0)
    with pytest.raises(ValueError):
        parse_position("0000000000001000")


def test_the_checkpoint_message_is_deduplicated_by_position():
    first, second = checkpoint_message("s", "A"), checkpoint_message("s", "A")
    assert first.headers[MSG_ID] == second.headers[MSG_ID]
    assert first.subject == "s.checkpoint"


def test_a_group_keeps_its_columns_source_types():
    """Parts with unsent columns are concatenated through Polars, which drops field metadata:
    a Mongo ``_id`` would reach the target as hex text instead of an ObjectId."""
    field = pa.field("_id", pa.string(), metadata={"bson_type": "objectId"})
    rows = pa.table({"_id": pa.array(["6b12", "6b13"]), "n": [1, 2]}).cast(
        pa.schema([field, pa.field("n", pa.int64())])
    )
    assembler = Assembler()
    for partition, i in enumerate((0, 1)):
        changes = ChangeBatch.build(
            "things", rows.slice(i, 1), ops=["u"], positions=[lsn_to_pos(10 + i)], key=["_id"],
            unsent={"n": [i == 1]},
        )  # fmt: skip
        (message,) = encode("s", changes, partition, lsn_to_pos(11), 1 << 20)
        assembler.data(1 + i, decode(message.headers, message.payload))
    (out,) = assembler.checkpoint(3, lsn_to_pos(11))
    assert out.data.schema.field("_id").metadata == {b"bson_type": b"objectId"}
    assert out.data.column("_id").to_pylist() == ["6b12", "6b13"]
