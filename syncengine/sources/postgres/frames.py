"""The messages between the source and its decode process (:mod:`.decodeproc`).

A frame is a 9-byte head (kind, header length, body length), a pickled header (small: batch
facts, an ack position, a log line) and a body: a batch's Arrow table as an Arrow IPC stream,
which the reading side maps without copying the column buffers. Both ends are our own
processes on a private socketpair, so pickle carries the headers (the DSN too: never on a
command line or in the environment).

Errors cross as their class and attributes, not as pickled exceptions: a ``DecodeError``'s
keyword-only ``offset`` cannot be unpickled, and the parent must raise the same class (its
retry policy) with the same message and hint.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import struct
import traceback
from typing import Any

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.errors import SourceUnavailable, SyncEngineError

_HEAD = struct.Struct("!cII")

#: child → parent (``ADDED``: the tables of an ``ADD`` are known, see ``decodeproc.add_tables``)
BATCH, LOG, ERROR, END, ADDED = b"B", b"L", b"E", b"Z", b"T"
#: parent → child (``ADD``: keys and user types of tables joining the publication)
PARAMS, ACK, QUIT, WANT, ADD = b"P", b"A", b"Q", b"W", b"T"


def send(
    writer: asyncio.StreamWriter, kind: bytes, header: object, body: bytes | pa.Buffer = b""
) -> None:
    """Queue one frame: head and pickled header, then the body, in two writes. Python 3.11's
    ``writelines`` joins its parts into one new ``bytes`` first, a copy of every batch body
    (megabytes); written on its own, a body the socket takes whole is never copied at all
    (see :data:`SOCKET_BUFFER`). An empty body writes nothing."""
    head = pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(body)
    writer.write(_HEAD.pack(kind, len(head), len(data)) + head)
    writer.write(data)


async def receive(reader: asyncio.StreamReader) -> tuple[bytes, Any, bytes] | None:
    """The next frame, or None at a clean end of the stream (the peer is gone)."""
    try:
        head = await reader.readexactly(_HEAD.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise SourceUnavailable("the decode process connection broke mid-frame") from None
        return None
    except ConnectionError:  # a write to the peer found it gone
        return None
    kind, head_len, body_len = _HEAD.unpack(head)
    try:
        header = pickle.loads(await reader.readexactly(head_len))
        body = await reader.readexactly(body_len) if body_len else b""
    except (asyncio.IncompleteReadError, ConnectionError):
        raise SourceUnavailable("the decode process connection broke mid-frame") from None
    return kind, header, body


def batch_body(batch: ChangeBatch) -> pa.Buffer:
    """A batch's table as an Arrow IPC stream (schema and field metadata included)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.data.schema) as writer:
        writer.write_table(batch.data)
    return sink.getvalue()


def batch_from(header: dict[str, Any], body: bytes) -> ChangeBatch:
    data = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    return ChangeBatch(header["table"], data, tuple(header["key"]), header["meta"])


def error_header(exc: BaseException) -> dict[str, Any]:
    """What the parent needs to raise ``exc`` again (see the module docstring)."""
    return {
        "module": type(exc).__module__,
        "name": type(exc).__qualname__,
        "args": [str(a) for a in exc.args],
        "state": {k: v for k, v in vars(exc).items() if _plain(v)},
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _plain(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple)


def rebuild_error(header: dict[str, Any]) -> Exception:
    """The child's error as the same syncengine class (so the same retry policy applies);
    anything else (a bug) as an error carrying the child's traceback."""
    try:
        cls = getattr(importlib.import_module(header["module"]), header["name"])
    except (ImportError, AttributeError):
        cls = None
    if isinstance(cls, type) and issubclass(cls, SyncEngineError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, *header["args"])
        exc.__dict__.update(header["state"])
        return exc
    return DecodeProcessBug(header["traceback"])


class DecodeProcessBug(Exception):
    """An unexpected error inside the decode process; its traceback is the message."""

    def __init__(self, child_traceback: str) -> None:
        super().__init__(f"the decode process failed:\n{child_traceback}")
