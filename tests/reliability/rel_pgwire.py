"""An independent reference for pgoutput v1: an encoder and a small strict decoder.

Written from the protocol documentation (PostgreSQL 15, "Logical Replication Message
Formats"), not from syncengine's decoder, so the fuzz tests can compare the two: whatever
the engine's decoder accepts, the reference must accept too, with the same values. A decoder
that accepts mangled bytes and returns *some* rows is worse than one that crashes.

Decoded messages are plain tuples: ``(kind, fields...)``; tuple data is a tuple of values,
each ``None`` (NULL), ``"u"`` (unchanged TOAST) or ``bytes``.
"""

from __future__ import annotations

import struct

# -- encoding -------------------------------------------------------------------------------


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def tuple_data(values: tuple[object, ...]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "u":
            out += b"u"
        else:
            assert isinstance(value, bytes)
            out += b"t" + struct.pack("!i", len(value)) + value
    return out


def encode(message: tuple) -> bytes:
    kind, *f = message
    if kind == "B":
        return b"B" + struct.pack("!QqI", *f)
    if kind == "C":
        return b"C" + struct.pack("!BQQq", 0, *f)
    if kind == "O":
        return b"O" + struct.pack("!Q", f[0]) + cstr(f[1])
    if kind == "R":
        oid, ns, name, ident, cols = f
        out = b"R" + struct.pack("!I", oid) + cstr(ns) + cstr(name) + ident.encode()
        out += struct.pack("!h", len(cols))
        for col, type_oid, typmod, key in cols:
            out += bytes([int(key)]) + cstr(col) + struct.pack("!Ii", type_oid, typmod)
        return out
    if kind == "Y":
        return b"Y" + struct.pack("!I", f[0]) + cstr(f[1]) + cstr(f[2])
    if kind == "I":
        return b"I" + struct.pack("!I", f[0]) + b"N" + tuple_data(f[1])
    if kind == "U":
        oid, old_kind, old, new = f
        head = b"U" + struct.pack("!I", oid)
        if old_kind:
            head += old_kind.encode() + tuple_data(old)
        return head + b"N" + tuple_data(new)
    if kind == "D":
        return b"D" + struct.pack("!I", f[0]) + f[1].encode() + tuple_data(f[2])
    if kind == "T":
        cascade, restart, oids = f
        options = int(cascade) | (int(restart) << 1)
        return (
            b"T"
            + struct.pack("!iB", len(oids), options)
            + b"".join(struct.pack("!I", o) for o in oids)
        )
    if kind == "M":
        transactional, lsn, prefix, content = f
        return (
            b"M"
            + bytes([int(transactional)])
            + struct.pack("!Q", lsn)
            + cstr(prefix)
            + struct.pack("!i", len(content))
            + content
        )
    raise ValueError(kind)


# -- strict decoding --------------------------------------------------------------------------


class Malformed(Exception):
    pass


class _R:
    def __init__(self, data: bytes) -> None:
        self.d, self.p = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.p + n > len(self.d):
            raise Malformed("truncated")
        out = self.d[self.p : self.p + n]
        self.p += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def cstr(self) -> str:
        end = self.d.find(b"\x00", self.p)
        if end < 0:
            raise Malformed("unterminated string")
        raw, self.p = self.d[self.p : end], end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise Malformed("not utf-8") from None

    def tag(self, allowed: bytes) -> str:
        t = self.take(1)
        if t not in [bytes([a]) for a in allowed]:
            raise Malformed(f"tag {t!r}")
        return t.decode()

    def tuple(self) -> tuple:
        (n,) = self.unpack("!h")
        if n < 0:
            raise Malformed("negative count")
        values: list[object] = []
        for _ in range(n):
            k = self.take(1)
            if k in (b"t", b"b"):
                (length,) = self.unpack("!i")
                values.append(self.take(length))
            elif k == b"n":
                values.append(None)
            elif k == b"u":
                values.append("u")
            else:
                raise Malformed("column kind")
        return tuple(values)


def reference_decode(data: bytes) -> tuple:
    """The message as a plain tuple; :class:`Malformed` for anything outside the format."""
    r = _R(data)
    kind = r.take(1).decode("latin-1")
    if kind == "B":
        out: tuple = ("B", *r.unpack("!QqI"))
    elif kind == "C":
        flags, *rest = r.unpack("!BQQq")
        if flags:
            raise Malformed("commit flags")
        out = ("C", *rest)
    elif kind == "O":
        out = ("O", r.unpack("!Q")[0], r.cstr())
    elif kind == "R":
        (oid,) = r.unpack("!I")
        ns, name = r.cstr() or "pg_catalog", r.cstr()  # empty: pg_catalog (per the docs)
        ident = r.tag(b"dnfi")
        (n,) = r.unpack("!h")
        if n < 0:
            raise Malformed("negative column count")
        cols = []
        for _ in range(n):
            (flags,) = r.unpack("!B")
            if flags > 1:
                raise Malformed("column flags")
            col = r.cstr()
            cols.append((col, *r.unpack("!Ii"), bool(flags)))
        out = ("R", oid, ns, name, ident, tuple(cols))
    elif kind == "Y":
        out = ("Y", r.unpack("!I")[0], r.cstr(), r.cstr())
    elif kind == "I":
        (oid,) = r.unpack("!I")
        r.tag(b"N")
        out = ("I", oid, r.tuple())
    elif kind == "U":
        (oid,) = r.unpack("!I")
        tag = r.tag(b"KON")
        old_kind, old = None, None
        if tag != "N":
            old_kind, old = tag, r.tuple()
            r.tag(b"N")
        out = ("U", oid, old_kind, old, r.tuple())
    elif kind == "D":
        (oid,) = r.unpack("!I")
        out = ("D", oid, r.tag(b"KO"), r.tuple())
    elif kind == "T":
        n, options = r.unpack("!iB")
        if n < 0 or options > 3:
            raise Malformed("truncate header")
        oids = tuple(r.unpack("!I")[0] for _ in range(n))
        out = ("T", bool(options & 1), bool(options & 2), oids)
    elif kind == "M":
        (flags,) = r.unpack("!B")
        if flags > 1:
            raise Malformed("message flags")
        (lsn,) = r.unpack("!Q")
        prefix = r.cstr()
        (length,) = r.unpack("!i")
        out = ("M", bool(flags), lsn, prefix, r.take(length))
    else:
        raise Malformed(f"kind {kind!r}")
    if r.p != len(data):
        raise Malformed("trailing bytes")
    return out


def normalize(message: object) -> tuple:
    """syncengine's decoded dataclass → the reference's plain tuple."""
    from syncengine.sources.postgres import pgoutput as po

    def values(t: object) -> tuple | None:
        if t is None:
            return None
        return tuple("u" if v is po.UNCHANGED else v for v in t)  # type: ignore[union-attr]

    m = message
    if isinstance(m, po.Begin):
        return ("B", m.final_lsn, m.commit_time, m.xid)
    if isinstance(m, po.Commit):
        return ("C", m.commit_lsn, m.end_lsn, m.commit_time)
    if isinstance(m, po.Origin):
        return ("O", m.lsn, m.name)
    if isinstance(m, po.Relation):
        cols = tuple((c.name, c.type_oid, c.typmod, c.is_key) for c in m.columns)
        return ("R", m.oid, m.namespace, m.name, m.replica_identity, cols)
    if isinstance(m, po.TypeInfo):
        return ("Y", m.oid, m.namespace, m.name)
    if isinstance(m, po.Insert):
        return ("I", m.relation, values(m.new))
    if isinstance(m, po.Update):
        return ("U", m.relation, m.old_kind, values(m.old), values(m.new))
    if isinstance(m, po.Delete):
        return ("D", m.relation, m.old_kind, values(m.old))
    if isinstance(m, po.Truncate):
        return ("T", m.cascade, m.restart_identity, m.relations)
    if isinstance(m, po.Message):
        return ("M", m.transactional, m.lsn, m.prefix, m.content)
    raise TypeError(type(m))
