"""Which Postgres column types hold which others' values exactly, and the narrowest type that
holds two: how a target follows a source column's type change (under
``on_schema_change: add``), and how a change group that read a table before and after the
change declares the column.

``ALTER TABLE … ALTER COLUMN … TYPE`` on a Postgres source reaches the stream as a Relation
message with the column's new type (the field's ``pg_type``). A target column left at the old
type takes the new values in one of two ways, both wrong: it refuses them (``integer`` sent
5,000,000,000; every such row to the dead letters) or, worse, rounds them without a word
(``numeric(10,2)`` sent 1.2345 stores 1.23; ``timestamptz(0)`` drops the microseconds;
``real`` keeps 24 bits of a double). So each time a table's spec changes, every column whose
declared source type the target column cannot hold exactly is changed to one that holds both
its own values and the source's: the source's type when that is wider
(``integer`` → ``bigint``, ``numeric(10,2)`` → ``numeric(20,4)``, ``character varying(5)``
→ ``text``, anything → ``text`` when the source's column became text), else the narrowest
type of the same family that holds both (``numeric(10,4)`` and ``numeric(12,2)`` →
``numeric(14,4)``). Every change here is a widening, so the conversion of the stored values
cannot fail or round. A column whose type already holds the source's (a user's ``text``
target for an ``integer`` source, a ``bigint`` for an ``integer``) is left alone, as are
types outside these families (user-defined types, ``uuid``, ``jsonb``…): their rows still
go to the dead letters with the server's reason when it refuses them.

Types are compared in ``format_type`` spelling, which both the source's ``pg_type`` and
the Postgres target's catalog reads use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: integer digits each integer type holds whole
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
#: the largest integer type each float type holds exactly (24 and 53 mantissa bits)
_FLOAT_HOLDS = {"real": {"smallint"}, "double precision": {"smallint", "integer", "real"}}
#: the types a double holds exactly, itself included
_IN_DOUBLE = {"double precision", *_FLOAT_HOLDS["double precision"]}
#: a numeric column's largest declarable precision
_MAX_PRECISION = 1000
_TEXT = {"text", "character varying"}
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_TEMPORAL = re.compile(r"^(timestamp|time)(?:\((\d)\))? (with|without) time zone$")
_INTERVAL = re.compile(r"^interval(?:\((\d)\))?$")


@dataclass(frozen=True)
class _Kind:
    """A type's family and its size in it (None: unbounded within the family)."""

    family: str
    #: integer digits (numbers), length (strings) or fractional-second digits (temporal)
    size: int | None = None
    scale: int = 0


def _kind(name: str) -> _Kind | None:
    if name in _INTEGER_DIGITS:
        return _Kind("number", _INTEGER_DIGITS[name])
    if name == "numeric":
        return _Kind("number", None)
    numeric = _NUMERIC.match(name)
    if numeric:
        precision, scale = int(numeric[1]), int(numeric[2])
        return _Kind("number", precision - scale, scale)
    if name in _TEXT:
        return _Kind("text", None)
    varchar = _VARCHAR.match(name)
    if varchar:
        return _Kind("text", int(varchar[1]))
    temporal = _TEMPORAL.match(name)
    if temporal:
        digits = 6 if temporal[2] is None else int(temporal[2])
        return _Kind(f"{temporal[1]} {temporal[3]} time zone", digits)
    interval = _INTERVAL.match(name)
    if interval:
        return _Kind("interval", 6 if interval[1] is None else int(interval[1]))
    return None


def family(name: str) -> str | None:
    """The family of column type ``name`` (``number``, floats too; ``text``; a temporal one
    such as ``timestamp with time zone``); None outside them."""
    if name in _FLOAT_HOLDS:
        return "number"
    kind = _kind(name)
    return None if kind is None else kind.family


def holds(target: str, source: str) -> bool:
    """Whether every value of type ``source`` is stored exactly in a ``target`` column."""
    if target == source or target in _TEXT:  # text holds every value's text form
        return True
    if target.endswith("[]") and source.endswith("[]"):
        return holds(target[:-2], source[:-2])
    if source in _FLOAT_HOLDS.get(target, ()):
        return True
    have, want = _kind(target), _kind(source)
    if have is None or want is None or have.family != want.family:
        return False
    if have.size is None:  # numeric, text, unbounded: every value of the family
        return True
    if have.family == "number" and have.scale < want.scale:
        return False
    return want.size is not None and want.size <= have.size


def joined(a: str, b: str) -> str | None:
    """The declared type of a column read as ``a`` and then as ``b`` (or the reverse): the one
    that holds the other's values, else the narrowest that holds both; None when none does."""
    if holds(a, b):
        return a
    return b if holds(b, a) else wider(a, b)


def wider(target: str, source: str) -> str | None:
    """The type a ``target`` column becomes to hold ``source`` values exactly as well as its
    own; None when it holds them already, or when no type of a family both belong to does."""
    if holds(target, source):
        return None
    if holds(source, target):
        return source
    if target.endswith("[]") and source.endswith("[]"):
        element = wider(target[:-2], source[:-2])
        return None if element is None else element + "[]"
    if {target, source} <= _IN_DOUBLE:
        return "double precision"  # real and integer: a double holds both
    have, want = _kind(target), _kind(source)
    # within the other families one of two types holds the other (above), except numbers
    if have is None or want is None or have.family != want.family or have.family != "number":
        return None
    if have.size is None or want.size is None:
        return "numeric"
    scale = max(have.scale, want.scale)
    precision = max(have.size, want.size) + scale
    return f"numeric({precision},{scale})" if precision <= _MAX_PRECISION else "numeric"
