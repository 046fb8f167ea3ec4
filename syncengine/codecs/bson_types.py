"""Inferred BSON type trees and how two of them unify.

Documents in one collection rarely share one schema, so the Arrow schema of a batch is the
*union* of what every document holds: a field one document lacks is null (and reported missing),
int32 and int64 widen to int64, ints and doubles widen to double (but an int64 beyond ±2^53,
which a double cannot hold exactly, is a conflict beside a double: ``bigLong``), and
sub-documents merge field by field. Two kinds that cannot share an Arrow type (a string here,
a number there) become a ``json`` node: that field, and only that field, is carried as an
extended-JSON string and a warning names it. Pure functions, no I/O, so they are unit- and
property-tested.

A node is a tuple: ``(kind,)`` for leaves, ``("struct", {name: node})`` and ``("list", node)``.
Leaf kinds are the BSON type aliases MongoDB uses (``$type``): ``objectId``, ``string``, ``int``
(int32), ``long``, ``double``, ``decimal``, ``bool``, ``date``, ``binData``, ``uuid``, ``null``,
plus ``json`` (anything else, or a conflict) and ``bigLong`` (a ``long`` beyond ±2^53).
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
from decimal import Decimal
from operator import itemgetter
from typing import Any

import pyarrow as pa
from bson import Binary, Decimal128, Int64, ObjectId
from bson.binary import UUID_SUBTYPE

from syncengine.codecs.arrow_numbers import EXACT_IN_DOUBLE

Node = tuple[Any, ...]

NULL: Node = ("null",)
JSON: Node = ("json",)
#: an int64 beyond ±2^53, which a double cannot hold exactly: it never widens to ``double``
#: (beside a double it is a conflict, so JSON); its BSON type is ``long``
BIG_LONG: Node = ("bigLong",)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_SCALARS: dict[type, Node] = {
    str: ("string",),
    bool: ("bool",),
    float: ("double",),
    ObjectId: ("objectId",),
    Decimal128: ("decimal",),
    Decimal: ("decimal",),
    _uuid.UUID: ("uuid",),
    bytes: ("binData",),
    _dt.datetime: ("date",),
    type(None): NULL,
}


def infer(value: Any) -> Node:
    """The type node of one decoded BSON value."""
    node = _SCALARS.get(type(value))
    if node is not None:
        return node
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_kind(value, value, isinstance(value, Int64))
    if isinstance(value, dict):
        if not value:
            return ("struct", {})
        return ("struct", {k: infer(v) for k, v in value.items()})
    if isinstance(value, list):
        elem = NULL
        for item in value:
            elem = unify(elem, infer(item))
        return ("list", elem)
    if isinstance(value, Binary):
        return ("uuid",) if value.subtype == UUID_SUBTYPE and len(value) == 16 else ("binData",)
    if isinstance(value, _dt.datetime):
        return ("date",)
    return JSON  # Regex, Code, Timestamp, MinKey/MaxKey, DBRef, DatetimeMS out of range …


def infer_column(values: list[Any]) -> Node:
    """The union node of a column's values (``null`` when all are null/missing).

    One step per Python class present, not per value: the classes are collected in C
    (``map(type, …)``), ints are classified by their column's minimum and maximum, and
    sub-documents and arrays are inferred a field (or the items) at a time over the whole
    column, not document by document. The same union as folding :func:`infer` over the
    values (their kinds unify in any order)."""
    node = NULL
    classes = dict.fromkeys(map(type, values))
    alone = len(classes) == 1  # one class only (the usual column): no filtering copy needed
    for cls in classes:
        if cls is dict:
            leaf = _struct_column(values if alone else [v for v in values if type(v) is dict])
        elif cls is list:
            leaf = ("list", infer_column([item for v in values if type(v) is list for item in v]))
        elif cls is int or cls is Int64:
            ints = values if alone else [v for v in values if type(v) is cls]
            leaf = _int_kind(min(ints), max(ints), cls is Int64)
        else:
            found = _SCALARS.get(cls)
            if found is None:  # Binary (UUID or not), datetime subclasses, other BSON types
                found = NULL
                for value in values:
                    if type(value) is cls:
                        found = unify(found, infer(value))
            leaf = found
        node = unify(node, leaf)
        if node == JSON:
            return JSON
    return node


def lift_json(node: Node) -> Node:
    """``json`` when ``node`` holds a ``json`` node (or an empty sub-document, which has no
    Arrow struct form) anywhere inside it, else ``node``.

    A top-level field is carried whole as extended-JSON text when any part of it is: only a
    top-level field's metadata survives every stage (Polars frames, batch unions, the
    target's spec), so a ``bson_type=json`` mark on a nested child would be lost and its text
    written as a string (a mixed array ``[1, "a"]`` arriving as ``["1", "\"a\""]``)."""
    return JSON if _holds_json(node) else node


def _holds_json(node: Node) -> bool:
    if node == JSON:
        return True
    if node[0] == "struct":
        return not node[1] or any(_holds_json(child) for child in node[1].values())
    if node[0] == "list":
        return _holds_json(node[1])
    return False


def field_columns(values: list[Any]) -> dict[str, list[Any]] | None:
    """Each field's values across ``values`` (None where a value is None), when every other
    value is a document with the same fields (what one collection's documents usually are);
    None otherwise. Fields in the first document's order; the columns are gathered in C
    (``itemgetter``), without a container per document for the collector to walk."""
    docs = [v for v in values if v is not None]
    if not docs:
        return {}
    if set(map(type, docs)) != {dict}:
        return None
    names = list(docs[0])
    if set(map(len, docs)) != {len(names)}:
        return None
    if len(docs) != len(values):
        filler = dict.fromkeys(names)
        docs = [filler if v is None else v for v in values]
    try:  # as many fields as the first, and each of its fields: the same fields
        return {name: list(map(itemgetter(name), docs)) for name in names}
    except KeyError:
        return None


def _struct_column(docs: list[dict[str, Any]]) -> Node:
    """The union node of sub-documents: every field that occurs (first-seen order), each
    inferred over the column of its values (None where a document lacks it)."""
    columns = field_columns(docs)
    if columns is None:
        names = dict.fromkeys(name for doc in docs for name in doc)
        columns = {name: [doc.get(name) for doc in docs] for name in names}
    return ("struct", {name: infer_column(column) for name, column in columns.items()})


def _int_kind(low: int, high: int, int64: bool) -> Node:
    """The node of ints from ``low`` to ``high`` (``int64``: BSON int64 values, a long even
    when small)."""
    if -EXACT_IN_DOUBLE <= low and high <= EXACT_IN_DOUBLE:
        return ("long",) if int64 or not (_INT32_MIN <= low and high <= _INT32_MAX) else ("int",)
    return BIG_LONG


#: BSON types that widen into one another (int32 → int64 → double; see :data:`_WIDEN`)
NUMBERS = frozenset({"int", "long", "double"})

_WIDEN = {
    frozenset({"int", "long"}): ("long",),
    frozenset({"int", "double"}): ("double",),
    frozenset({"long", "double"}): ("double",),
    frozenset({"int", "bigLong"}): BIG_LONG,
    frozenset({"long", "bigLong"}): BIG_LONG,
}


def wider_number(a: bytes, b: bytes) -> bytes | None:
    """The ``bson_type`` of a field joined from fields of numeric BSON types ``a`` and ``b``
    that Arrow holds alike (an int beside a long: int64 both), as one decode of their values
    would type it; None when they are not two such numbers."""
    widened = _WIDEN.get(frozenset({a.decode(), b.decode()}))
    return widened[0].encode() if widened and a != b else None


def wider_bson_field(a: pa.Field, b: pa.Field) -> pa.Field:
    """``a``, saying the wider of the two numeric BSON types when ``b``'s is wider: an int
    batch joined with a long one holds longs, as one decode of both types the field."""
    kinds = [(f.metadata or {}).get(b"bson_type") for f in (a, b)]
    if kinds[0] is None or kinds[1] is None:
        return a
    wider = wider_number(kinds[0], kinds[1])
    return a if wider is None else a.with_metadata({**(a.metadata or {}), b"bson_type": wider})


def unify(a: Node, b: Node) -> Node:
    """The narrowest node both ``a`` and ``b`` fit in (``json`` when none)."""
    if a == b:
        return a
    if a == NULL:
        return b
    if b == NULL:
        return a
    if a[0] == "struct" and b[0] == "struct":
        fields = dict(a[1])
        for name, node in b[1].items():
            fields[name] = unify(fields[name], node) if name in fields else node
        return ("struct", fields)
    if a[0] == "list" and b[0] == "list":
        return ("list", unify(a[1], b[1]))
    return _WIDEN.get(frozenset({a[0], b[0]}), JSON)


def conflicts(values: list[Any], node: Node, path: str) -> list[str]:
    """Paths inside ``node`` that fell back to JSON because their documents disagree."""
    if not _holds_json(node):  # only a json node can report one: no walk over the values
        return []
    if node == JSON:
        kinds = sorted({infer(v)[0] for v in values if v is not None})
        return [f"{path}: {' vs '.join(kinds)}"] if len(kinds) > 1 else []
    out: list[str] = []
    if node[0] == "struct":
        for name, child in node[1].items():
            sub = [v.get(name) for v in values if isinstance(v, dict)]
            out += conflicts(sub, child, f"{path}.{name}")
    elif node[0] == "list":
        items = [item for v in values if isinstance(v, list) for item in v]
        out += conflicts(items, node[1], f"{path}[]")
    return out
