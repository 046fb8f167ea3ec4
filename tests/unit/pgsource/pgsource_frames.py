"""pgoutput byte frames for tests, written from the protocol docs, not from the decoder."""

from __future__ import annotations

import struct


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def tuple_data(values: list[object]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "UNCHANGED":
            out += b"u"
        else:
            raw = value if isinstance(value, bytes) else str(value).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def begin(final_lsn: int, ts: int, xid: int) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int) -> bytes:
    return b"C" + struct.pack("!BQQq", 0, commit_lsn, end_lsn, ts)


def relation(
    oid: int, ns: str, name: str, columns: list[tuple[str, int, int, bool]], identity: bytes = b"d"
) -> bytes:
    out = b"R" + struct.pack("!I", oid) + cstr(ns) + cstr(name) + identity
    out += struct.pack("!h", len(columns))
    for col, type_oid, typmod, key in columns:
        out += bytes([1 if key else 0]) + cstr(col) + struct.pack("!Ii", type_oid, typmod)
    return out


def type_msg(oid: int, ns: str, name: str) -> bytes:
    return b"Y" + struct.pack("!I", oid) + cstr(ns) + cstr(name)


def insert(oid: int, values: list[object]) -> bytes:
    return b"I" + struct.pack("!I", oid) + b"N" + tuple_data(values)


def update(
    oid: int, new: list[object], old: list[object] | None = None, kind: bytes = b"O"
) -> bytes:
    out = b"U" + struct.pack("!I", oid)
    if old is not None:
        out += kind + tuple_data(old)
    return out + b"N" + tuple_data(new)


def delete(oid: int, old: list[object], kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack("!I", oid) + kind + tuple_data(old)


def truncate(oids: list[int], options: int = 0) -> bytes:
    return (
        b"T" + struct.pack("!iB", len(oids), options) + b"".join(struct.pack("!I", o) for o in oids)
    )


def message(prefix: str, content: bytes, lsn: int = 0, transactional: bool = True) -> bytes:
    return (
        b"M"
        + bytes([1 if transactional else 0])
        + struct.pack("!Q", lsn)
        + cstr(prefix)
        + struct.pack("!i", len(content))
        + content
    )


def origin(lsn: int, name: str) -> bytes:
    return b"O" + struct.pack("!Q", lsn) + cstr(name)
