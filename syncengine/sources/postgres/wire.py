"""Bounds-checked reading of Postgres wire bytes, and the replication protocol's framing.

Everything here is a pure function of bytes: the socket loop in :mod:`.replication` feeds it
CopyData payloads. Every read checks the remaining length first, so malformed input raises
:class:`~syncengine.errors.DecodeError` naming the offset instead of reading garbage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from syncengine.errors import DecodeError

#: Postgres timestamps count microseconds from 2000-01-01 UTC
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_UNIX_US = 946_684_800_000_000

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")
#: an XLogData message's header after its kind byte: WAL start, WAL end, send time
XLOG_HEADER = struct.Struct("!QQq")


class Reader:
    """A cursor over one message; every read is bounds-checked."""

    __slots__ = ("data", "pos", "base")

    def __init__(self, data: bytes | memoryview, base: int = 0) -> None:
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.pos = 0
        #: offset of ``data`` within the enclosing frame, for error messages
        self.base = base

    def fail(self, message: str) -> DecodeError:
        return DecodeError(message, offset=self.base + self.pos)

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise self.fail(f"truncated {what}: need {n} bytes, {len(self.data) - start} left")
        self.pos = start + n
        return start

    def u8(self, what: str = "byte") -> int:
        return self.data[self._take(1, what)]

    def i16(self, what: str = "int16") -> int:
        return int(_I16.unpack_from(self.data, self._take(2, what))[0])

    def i32(self, what: str = "int32") -> int:
        return int(_I32.unpack_from(self.data, self._take(4, what))[0])

    def u32(self, what: str = "uint32") -> int:
        return int(_U32.unpack_from(self.data, self._take(4, what))[0])

    def i64(self, what: str = "int64") -> int:
        return int(_I64.unpack_from(self.data, self._take(8, what))[0])

    def u64(self, what: str = "uint64") -> int:
        return int(_U64.unpack_from(self.data, self._take(8, what))[0])

    def raw(self, n: int, what: str = "bytes") -> bytes:
        start = self._take(n, what)
        return self.data[start : start + n]

    def cstr(self, what: str = "string") -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise self.fail(f"unterminated {what}")
        start = self.pos
        self.pos = end + 1
        try:
            return self.data[start:end].decode()
        except UnicodeDecodeError:
            raise DecodeError(f"{what} is not UTF-8", offset=self.base + start) from None

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes after {what}")


def pg_time(us: int) -> datetime:
    """A Postgres protocol timestamp (µs since 2000-01-01) as an aware UTC datetime."""
    return PG_EPOCH + timedelta(microseconds=us)


def pg_time_to_unix_us(us: int) -> int:
    return us + _PG_EPOCH_UNIX_US


def now_pg_us() -> int:
    return int((datetime.now(UTC) - PG_EPOCH) / timedelta(microseconds=1))


class XLogData(NamedTuple):
    """'w': a chunk of decoded output (one pgoutput message) and where it sits in the WAL. A
    named tuple, not a frozen dataclass: one is made per change, and a tuple is built in a
    fraction of the time."""

    start: int
    end: int
    sent_at: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Keepalive:
    """'k': the server's WAL end; ``reply`` asks for a status update right away."""

    end: int
    sent_at: int
    reply: bool


def parse_copy_data(data: bytes | memoryview) -> XLogData | Keepalive:
    """Split one CopyData payload of a START_REPLICATION stream."""
    if len(data) >= 25 and data[0] == 0x77:  # 'w', the hot path
        start, end, sent = XLOG_HEADER.unpack_from(data, 1)
        return XLogData(start, end, sent, bytes(data[25:]))
    r = Reader(data)
    kind = r.u8("message kind")
    if kind == ord("w"):
        r.u64("wal start"), r.u64("wal end"), r.i64("send time")  # raises: too short
    if kind == ord("k"):
        end, sent, reply = r.u64("wal end"), r.i64("send time"), r.u8("reply flag")
        r.end("keepalive")
        if reply > 1:
            raise DecodeError(f"keepalive reply flag {reply} is not 0 or 1", offset=17)
        return Keepalive(end, sent, bool(reply))
    raise DecodeError(f"unknown replication message kind {kind!r}", offset=0)


def standby_status(write: int, flush: int, apply: int, reply: bool = False) -> bytes:
    """'r': the standby status update telling the server what it may discard (``flush``)."""
    return b"r" + struct.pack("!QQQqB", write, flush, apply, now_pg_us(), 1 if reply else 0)


def format_lsn(lsn: int) -> str:
    """``0/16B3748`` form for SQL and the replication commands."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
