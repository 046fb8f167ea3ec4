"""The pgoutput logical decoding protocol (version 1), decoded from bytes with no I/O.

:func:`decode` turns one XLogData payload into one message object. Column values stay the
server's text bytes (conversion to Arrow happens column-wise later, in :mod:`.columns`); an
unchanged TOAST value is the :data:`UNCHANGED` marker, never ``None`` (which is SQL NULL).
Anything malformed raises :class:`~syncengine.errors.DecodeError` with the byte offset.

Reference: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from syncengine.errors import DecodeError
from syncengine.names import QualifiedName
from syncengine.sources.postgres.wire import Reader


class _Unchanged:
    """An unchanged TOASTed value the server did not send ('u')."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

Value = bytes | None | _Unchanged
Tuple = tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: int


@dataclass(frozen=True, slots=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    typmod: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        """The canonical table name (:mod:`syncengine.names`): the key tables go by."""
        return QualifiedName(self.namespace, self.name).sql


@dataclass(frozen=True, slots=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    relation: int
    #: 'K' (old key columns only), 'O' (whole old row, REPLICA IDENTITY FULL) or None
    old_kind: str | None
    old: Tuple | None
    new: Tuple


@dataclass(frozen=True, slots=True)
class Delete:
    relation: int
    old_kind: str
    old: Tuple


@dataclass(frozen=True, slots=True)
class Truncate:
    cascade: bool
    restart_identity: bool
    relations: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


PgOutputMessage = (
    Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate | Message
)

_IDENTITIES = {ord("d"): "d", ord("n"): "n", ord("f"): "f", ord("i"): "i"}


def decode(payload: bytes | memoryview) -> PgOutputMessage:
    """One pgoutput message; the whole payload must be consumed."""
    r = Reader(payload)
    kind = r.u8("message type")
    parse = _PARSERS.get(kind)
    if parse is None:
        raise DecodeError(f"unknown pgoutput message type {kind!r}", offset=0)
    message = parse(r)
    r.end(f"{chr(kind)!r} message")
    return message


def _begin(r: Reader) -> Begin:
    return Begin(r.u64("final lsn"), r.i64("commit time"), r.u32("xid"))


def _commit(r: Reader) -> Commit:
    flags = r.u8("commit flags")
    if flags != 0:
        raise DecodeError(f"commit flags {flags} are not 0", offset=r.base + r.pos - 1)
    return Commit(flags, r.u64("commit lsn"), r.u64("end lsn"), r.i64("commit time"))


def _origin(r: Reader) -> Origin:
    return Origin(r.u64("origin lsn"), r.cstr("origin name"))


def _relation(r: Reader) -> Relation:
    oid = r.u32("relation oid")
    namespace = r.cstr("namespace") or "pg_catalog"
    name = r.cstr("relation name")
    identity = _IDENTITIES.get(r.u8("replica identity"))
    if identity is None:
        raise r.fail("unknown replica identity")
    count = r.i16("column count")
    if count < 0:
        raise r.fail(f"negative column count {count}")
    columns = []
    for _ in range(count):
        flags = r.u8("column flags")
        if flags > 1:
            raise r.fail(f"unknown column flags {flags}")
        columns.append(
            Column(r.cstr("column name"), r.u32("type oid"), r.i32("typmod"), flags == 1)
        )
    return Relation(oid, namespace, name, identity, tuple(columns))


def _type(r: Reader) -> TypeInfo:
    return TypeInfo(r.u32("type oid"), r.cstr("type namespace"), r.cstr("type name"))


def _tuple(r: Reader) -> Tuple:
    """TupleData, the hot path: indexes the bytes directly, checking every length first."""
    data, pos, end, base = r.data, r.pos, len(r.data), r.base
    if pos + 2 > end:
        raise r.fail("truncated tuple column count")
    count = int.from_bytes(data[pos : pos + 2], "big", signed=True)
    pos += 2
    if count < 0:
        raise DecodeError(f"negative tuple column count {count}", offset=base + pos)
    values: list[Value] = []
    append = values.append
    for _ in range(count):
        if pos >= end:
            raise DecodeError("truncated column kind", offset=base + pos)
        kind = data[pos]
        pos += 1
        if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
            if pos + 4 > end:
                raise DecodeError("truncated value length", offset=base + pos)
            size = int.from_bytes(data[pos : pos + 4], "big", signed=True)
            pos += 4
            if size < 0 or pos + size > end:
                raise DecodeError(
                    f"truncated value: need {size} bytes, {end - pos} left", offset=base + pos
                )
            append(data[pos : pos + size])
            pos += size
        elif kind == 0x6E:  # 'n'
            append(None)
        elif kind == 0x75:  # 'u'
            append(UNCHANGED)
        else:
            raise DecodeError(f"unknown tuple column kind {kind!r}", offset=base + pos - 1)
    r.pos = pos
    return tuple(values)


def _expect(r: Reader, allowed: bytes, what: str) -> str:
    at = r.pos
    tag = r.u8(what)
    if tag not in allowed:
        raise DecodeError(f"expected {what} {allowed!r}, got {tag!r}", offset=r.base + at)
    return chr(tag)


def _insert(r: Reader) -> Insert:
    relation = r.u32("relation oid")
    _expect(r, b"N", "new tuple tag")
    return Insert(relation, _tuple(r))


def _update(r: Reader) -> Update:
    relation = r.u32("relation oid")
    tag = _expect(r, b"KON", "tuple tag")
    old_kind: str | None = None
    old: Tuple | None = None
    if tag != "N":
        old_kind, old = tag, _tuple(r)
        _expect(r, b"N", "new tuple tag")
    return Update(relation, old_kind, old, _tuple(r))


def _delete(r: Reader) -> Delete:
    relation = r.u32("relation oid")
    tag = _expect(r, b"KO", "old tuple tag")
    return Delete(relation, tag, _tuple(r))


def _truncate(r: Reader) -> Truncate:
    count = r.i32("relation count")
    options = r.u8("truncate options")
    if count < 0 or options > 3:
        raise r.fail(f"bad truncate header (count {count}, options {options})")
    relations = tuple(r.u32("relation oid") for _ in range(count))
    return Truncate(bool(options & 1), bool(options & 2), relations)


def _message(r: Reader) -> Message:
    flags = r.u8("message flags")
    if flags > 1:
        raise r.fail(f"unknown message flags {flags}")
    lsn = r.u64("message lsn")
    prefix = r.cstr("message prefix")
    content = r.raw(r.i32("content length"), "message content")
    return Message(flags == 1, lsn, prefix, content)


_PARSERS: dict[int, Callable[[Reader], PgOutputMessage]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}
