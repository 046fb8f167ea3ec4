"""Frames between the source and its decode process: batches keep their schema metadata, errors
come back as the same class with the same message and retry policy."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch
from syncengine.errors import DecodeError, FatalError, SourceUnavailable
from syncengine.sources.postgres import frames


def roundtrip(exc: BaseException) -> Exception:
    return frames.rebuild_error(frames.error_header(exc))


def test_a_batch_keeps_its_rows_schema_metadata_and_meta():
    field = pa.field("n", pa.decimal128(12, 2), metadata={"pg_type": b"numeric(12,2)"})
    data = pa.table({"n": pa.array([1, None], pa.decimal128(12, 2))}).cast(pa.schema([field]))
    batch = ChangeBatch("public.t", data, ("n",), {"relation": 7, "resume": "00000001"})
    header = {"table": batch.table, "key": batch.key, "meta": dict(batch.meta)}
    back = frames.batch_from(header, frames.batch_body(batch).to_pybytes())
    assert back.data.equals(data, check_metadata=True)
    assert (back.table, back.key, dict(back.meta)) == ("public.t", ("n",), batch.meta)


@pytest.mark.parametrize(
    "exc",
    [
        DecodeError("truncated value: need 4 bytes, 1 left", offset=17),
        SourceUnavailable("replication stream: server closed", hint="it restarts"),
        FatalError("publication does not exist", hint="create it"),
    ],
)
def test_errors_come_back_as_the_same_class(exc):
    back = roundtrip(exc)
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)
    assert back.retriable == exc.retriable


def test_an_unexpected_error_carries_the_childs_traceback():
    try:
        {}["missing"]
    except KeyError as exc:
        back = roundtrip(exc)
    assert isinstance(back, frames.DecodeProcessBug)
    assert "KeyError: 'missing'" in str(back) and "test_pgsource_frames.py" in str(back)


def test_frames_cross_a_socket_and_a_closed_peer_reads_as_the_end():
    async def scenario():
        import socket

        a, b = socket.socketpair()
        _, writer = await asyncio.open_unix_connection(sock=a)
        reader, other = await asyncio.open_unix_connection(sock=b)
        frames.send(writer, frames.ACK, 12345)
        frames.send(writer, frames.BATCH, {"x": 1}, b"\x00" * 300_000)
        await writer.drain()
        writer.close()
        got = [await frames.receive(reader), await frames.receive(reader)]
        end = await frames.receive(reader)
        other.close()
        return got, end

    got, end = asyncio.run(scenario())
    assert got[0] == (frames.ACK, 12345, b"")
    assert got[1][:2] == (frames.BATCH, {"x": 1}) and len(got[1][2]) == 300_000
    assert end is None
