"""Pushing a mapping's ``filter`` into the source: a Postgres ``WHERE`` and a Mongo ``$match``.

Push-down only saves reading rows; the Polars filter in the mapping stays authoritative, so a
filter that cannot be pushed (``None`` from :func:`to_mongo_match`) is simply applied after
reading. What is pushed must select *exactly* the rows the Polars filter keeps, so SQL's
three-valued logic is translated faithfully: every predicate is compiled to two Mongo filters,
"is TRUE" and "is FALSE" (``NOT p`` is "p is FALSE", which excludes NULLs as SQL does, while
Mongo's ``$not``/``$ne`` alone would include missing fields).

Change streams need care: an update that *stops* matching must still reach the mapping (it
becomes a delete), so :func:`to_mongo_stream_match` filters inserts only.

Several mappings may read one table: the source may only drop a row that *no* mapping keeps, so
:func:`postgres_where_any` and :func:`mongo_match_any` push the OR of their filters, and nothing
when one of them cannot be pushed (:class:`NotPushable` says why).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from bson import Decimal128
from sqlglot import exp
from syncengine.mappings.functions import like_regex
from syncengine.mappings.parse import parse_expression

from syncengine.changes import META_COLUMNS

_NOTHING: dict[str, Any] = {"$nor": [{}]}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_FLIP: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
}
_TRUE_OP: dict[type[exp.Expression], str] = {
    exp.GT: "$gt",
    exp.GTE: "$gte",
    exp.LT: "$lt",
    exp.LTE: "$lte",
}
_FALSE_OP: dict[type[exp.Expression], str] = {
    exp.GT: "$lte",
    exp.GTE: "$lt",
    exp.LT: "$gte",
    exp.LTE: "$gt",
}


def to_postgres_where(filter: str, dialect: str = "postgres") -> str:
    """The filter as a Postgres boolean expression for a snapshot query's ``WHERE``.

    Dotted names (``doc.a.b``) read json/jsonb columns as text (``"doc" #>> '{a,b}'``), which
    is what the mapping does for JSON text columns too. Text ordering compares bytes in Polars
    and Mongo, so ordering comparisons with a string constant get ``COLLATE "C"``.
    """
    tree = parse_expression(filter, dialect).copy()

    def rewrite(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Literal)
            and node.is_string
            and isinstance(node.parent, exp.GT | exp.GTE | exp.LT | exp.LTE | exp.Between)
        ):
            collation = exp.Identifier(this="C", quoted=True)
            return exp.Collate(this=node.copy(), expression=collation)
        if isinstance(node, exp.Column) and len(node.parts) > 1:
            top, *rest = [p.name for p in node.parts]
            path = "{" + ",".join(rest) + "}"
            return exp.JSONBExtractScalar(this=exp.column(top), expression=exp.Literal.string(path))
        return node

    # quoted: the mapping reads a column by the name as written, Postgres would fold it
    return tree.transform(rewrite).sql(dialect="postgres", identify=True)


class _NotPushable(Exception):
    pass


class NotPushable(Exception):
    """A filter the source cannot apply exactly as the mapping does (the message says why)."""


#: (SQL predicate, sqlglot dialect) of one mapping's filter
Filter = tuple[str, str]

#: what a pushed Postgres ``WHERE`` may contain: comparisons, logic and constants, none of which
#: can raise on a row's value (a division by zero or a failed cast would abort the whole
#: snapshot, where the mapping sends that one row to dead letters), nor depends on the locale
#: (``lower``, ``ILIKE``) or a regex dialect that Polars does not share
_PG_SAFE: tuple[type[exp.Expression], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.DataType,
    exp.DataTypeParam,
)


def _postgres_safe(filter: str, dialect: str) -> None:
    for node in parse_expression(filter, dialect).walk():
        if isinstance(node, exp.Cast | exp.Neg) and isinstance(node.this, exp.Literal):
            continue  # a typed or negative constant: checked by the server when planning
        if not isinstance(node, _PG_SAFE) or (
            isinstance(node, exp.In) and (node.args.get("query") or node.args.get("unnest"))
        ):
            raise NotPushable(f"{filter!r}: {node.sql(dialect='postgres')!r} is not pushed down")


def postgres_where_any(filters: Sequence[Filter]) -> str:
    """A Postgres condition true for a row that any of ``filters`` keeps: their OR.

    Only comparisons of columns and constants are pushed (see ``_PG_SAFE``); anything else
    raises :class:`NotPushable`, and the mapping filters after reading.
    """
    if not filters:
        raise NotPushable("a mapping of the table has no filter")
    for text, dialect in filters:
        _postgres_safe(text, dialect)
    wheres = [to_postgres_where(text, dialect) for text, dialect in filters]
    return wheres[0] if len(wheres) == 1 else " OR ".join(f"({w})" for w in wheres)


def mongo_match_any(filters: Sequence[Filter], prefix: str = "") -> dict[str, Any]:
    """A ``$match`` document true for a document that any of ``filters`` keeps.

    The mapping keeps a document that lacks a top-level field its filter reads, whatever the
    filter says (a missing field is *unsent*: the filter cannot tell), so such documents match
    too (``$exists: false``).
    """
    if not filters:
        raise NotPushable("a mapping of the collection has no filter")
    matches: list[dict[str, Any]] = []
    lacking: dict[str, None] = {}
    for text, dialect in filters:
        translator = _Translator(prefix)
        try:
            matches.append(translator.true(parse_expression(text, dialect)))
        except _NotPushable:
            raise NotPushable(f"{text!r} has no exact Mongo translation") from None
        lacking.update(dict.fromkeys(translator.tops))
    matches.extend({top: {"$exists": False}} for top in lacking)
    return matches[0] if len(matches) == 1 else {"$or": matches}


def stream_match(match: dict[str, Any]) -> dict[str, Any]:
    """A change-stream ``$match`` from a ``fullDocument.``-prefixed one: drops only the inserts
    that do not match. Updates, replaces and deletes always pass: one that makes a document
    leave the filter must turn into a delete at the target, which only the mapping can do (a
    delete event carries only the key; an update's looked-up document is not its after-image)."""
    return {"$or": [{"operationType": {"$ne": "insert"}}, match]}


def to_mongo_match(
    filter: str, dialect: str = "postgres", prefix: str = ""
) -> dict[str, Any] | None:
    """The filter as a ``$match`` document, or None when it is not fully translatable.

    ``prefix`` is put before every field path (``"fullDocument."`` for change events).
    """
    tree = parse_expression(filter, dialect)
    try:
        return _Translator(prefix).true(tree)
    except _NotPushable:
        return None


def to_mongo_stream_match(filter: str, dialect: str = "postgres") -> dict[str, Any] | None:
    """A change-stream ``$match``: drops only inserts that do not match the filter.

    Updates, replaces and deletes always pass: one that stops matching must turn into a delete
    at the target, which only the mapping can do.
    """
    match = to_mongo_match(filter, dialect, prefix="fullDocument.")
    return None if match is None else stream_match(match)


class _Translator:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: the top-level fields read, prefixed
        self.tops: dict[str, None] = {}

    def field(self, node: exp.Expression) -> str:
        if not isinstance(node, exp.Column | exp.Dot):
            raise _NotPushable
        parts = [p.name for p in node.parts] if isinstance(node, exp.Column) else []
        if isinstance(node, exp.Dot):
            parts = [*self.field(node.this).removeprefix(self.prefix).split("."), node.name]
        if not parts or parts[0] in META_COLUMNS or any(p.startswith("$") for p in parts):
            raise _NotPushable
        self.tops[self.prefix + parts[0]] = None
        return self.prefix + ".".join(parts)

    def value(self, node: exp.Expression) -> Any:
        if isinstance(node, exp.Paren):
            return self.value(node.this)
        if isinstance(node, exp.Literal):
            if node.is_string:
                if _ISO_DATE.match(node.this):
                    raise _NotPushable  # the column may be a date: only typed literals
                return node.this
            text = node.this
            return int(text) if text.lstrip("-").isdigit() else float(text)
        if isinstance(node, exp.Neg):
            value = self.value(node.this)
            if isinstance(value, int | float):
                return -value
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
            return self.typed(node)
        raise _NotPushable

    def typed(self, node: exp.Cast) -> Any:
        kind = node.to.this
        text = node.this.name
        T = exp.DataType.Type
        if kind in (T.TIMESTAMP, T.TIMESTAMPTZ, T.DATE):
            value = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
            if value.tzinfo is None:
                return value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC)
        if kind == T.DECIMAL:
            return Decimal128(text)
        if kind in (T.INT, T.BIGINT, T.SMALLINT):
            return int(text)
        if kind in (T.DOUBLE, T.FLOAT):
            return float(text)
        if kind in (T.TEXT, T.VARCHAR):
            return text
        raise _NotPushable

    def compare(self, node: exp.Expression) -> tuple[type, str, Any]:
        kind: type = type(node)
        left, right = node.this, node.expression
        if isinstance(left, exp.Column | exp.Dot):
            return kind, self.field(left), self.value(right)
        if isinstance(right, exp.Column | exp.Dot):
            return _FLIP.get(kind, kind), self.field(right), self.value(left)
        raise _NotPushable

    # -- "is TRUE" / "is FALSE" -----------------------------------------------------------

    def true(self, node: exp.Expression) -> dict[str, Any]:
        return self._translate(node, want=True)

    def false(self, node: exp.Expression) -> dict[str, Any]:
        return self._translate(node, want=False)

    def _translate(self, node: exp.Expression, want: bool) -> dict[str, Any]:
        if node.args.get("negate"):
            plain = node.copy()
            plain.set("negate", None)
            return self._translate(plain, not want)
        if isinstance(node, exp.Paren):
            return self._translate(node.this, want)
        if isinstance(node, exp.Not):
            return self._translate(node.this, not want)
        if isinstance(node, exp.And | exp.Or):
            both = [self._translate(node.this, want), self._translate(node.expression, want)]
            conjunction = isinstance(node, exp.And) == want
            return {"$and" if conjunction else "$or": both}
        if isinstance(node, exp.Boolean):
            return {} if bool(node.this) == want else _NOTHING
        if isinstance(node, exp.Column | exp.Dot):
            return {self.field(node): want}
        if isinstance(node, exp.EQ | exp.NEQ):
            _, name, value = self.compare(node)
            if value is None:
                raise _NotPushable
            if isinstance(node, exp.EQ) == want:
                return {name: {"$eq": value}}
            return {name: {"$nin": [value, None]}}
        if type(node) in _TRUE_OP:
            kind, name, value = self.compare(node)
            return {name: {(_TRUE_OP if want else _FALSE_OP)[kind]: value}}
        if isinstance(node, exp.Is):
            return self._is(node, want)
        if isinstance(node, exp.In):
            return self._in(node, want)
        if isinstance(node, exp.Between):
            name = self.field(node.this)
            low, high = self.value(node.args["low"]), self.value(node.args["high"])
            if want:
                return {name: {"$gte": low, "$lte": high}}
            return {"$or": [{name: {"$lt": low}}, {name: {"$gt": high}}]}
        if isinstance(node, exp.Like | exp.ILike | exp.RegexpLike | exp.RegexpILike):
            return self._regex(node, want)
        raise _NotPushable

    def _is(self, node: exp.Is, want: bool) -> dict[str, Any]:
        name = self.field(node.this)
        what = node.expression
        if isinstance(what, exp.Null):
            return {name: None} if want else {name: {"$ne": None}}
        if isinstance(what, exp.Boolean):
            return {name: bool(what.this)} if want else {name: {"$ne": bool(what.this)}}
        raise _NotPushable

    def _in(self, node: exp.In, want: bool) -> dict[str, Any]:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise _NotPushable
        name = self.field(node.this)
        values = [self.value(v) for v in node.expressions]
        if any(v is None for v in values) or not values:
            raise _NotPushable
        return {name: {"$in": values}} if want else {name: {"$nin": [*values, None]}}

    def _regex(self, node: exp.Expression, want: bool) -> dict[str, Any]:
        name = self.field(node.this)
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise _NotPushable
        if isinstance(node, exp.Like | exp.ILike):
            regex = like_regex(pattern.this).removeprefix("(?s)")
            options = "s"
        else:
            regex, options = pattern.this, ""
        if isinstance(node, exp.ILike | exp.RegexpILike):
            options += "i"
        condition: dict[str, Any] = {"$regex": regex}
        if options:
            condition["$options"] = options
        if want:
            return {name: condition}
        return {name: {"$not": condition, "$type": "string"}}
