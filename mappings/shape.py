"""The shape of a mapping's output: which target fields exist, how they nest, and the key.

A mapping's output is a list of *leaves*: a target name (dotted when nested), how to compute it
(an SQL expression, or a source column path for fields that pass through) and a tail of struct
fields to descend plus an optional JSON encoding (what ``flatten`` adds). Keeping leaves flat
makes unsent masks, dead-letter blame and before-images per field simple; structs for dotted
names (``customer.email``) are assembled only at the very end (:func:`nest`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl
import pyarrow as pa
from syncengine.mappings.casts import to_text
from syncengine.mappings.compiler import Compiled

ColumnRef = Callable[[str], pl.Expr]


@dataclass(frozen=True)
class Leaf:
    """One target field. ``text`` is its SQL, or None when it passes ``source`` through."""

    name: str
    text: str | None = None
    source: str | None = None
    tail: tuple[str, ...] = ()
    as_json: bool = False
    metadata: dict[bytes, bytes] | None = None
    #: a source column passed through under its own name: a dot in it is part of the name,
    #: not a nesting path (only dotted names written in ``fields:`` nest)
    literal: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return (self.name,) if self.literal else tuple(self.name.split("."))

    def finish(self, base: Compiled) -> Compiled:
        """Apply the flatten tail (struct steps, JSON encoding) to the base expression."""
        expr = base.expr
        deps = base.deps
        for part in self.tail:
            expr = expr.struct.field(part)
        if self.tail and self.source is not None:
            deps = frozenset({".".join((self.source, *self.tail))})
        if self.as_json:
            expr = to_text(expr, pl.List(pl.Null))
        return replace(base, expr=expr, deps=deps)


def child_metadata(field: pa.Field | None, tail: tuple[str, ...]) -> dict[bytes, bytes] | None:
    """Arrow metadata of a (nested) source field, to pass through unchanged."""
    for part in tail:
        if field is None or not pa.types.is_struct(field.type):
            return None
        index = field.type.get_field_index(part)
        field = field.type.field(index) if index >= 0 else None
    return dict(field.metadata) if field is not None and field.metadata else None


def flatten(leaves: list[Leaf], dtypes: dict[str, pl.DataType], source: pa.Schema) -> list[Leaf]:
    """Struct leaves become ``parent_child`` leaves (recursively); lists become JSON text."""
    out: list[Leaf] = []

    def visit(leaf: Leaf, dtype: object) -> None:
        if isinstance(dtype, pl.Struct):
            for child in dtype.fields:
                tail = (*leaf.tail, child.name)
                meta = None
                if leaf.source is not None:
                    top = source.field(leaf.source) if leaf.source in source.names else None
                    meta = child_metadata(top, tail)
                sub = replace(leaf, name=f"{leaf.name}_{child.name}", tail=tail, metadata=meta)
                visit(sub, child.dtype)
        elif isinstance(dtype, pl.List | pl.Array):
            out.append(replace(leaf, as_json=True, metadata={b"pg_type": b"jsonb"}))
        else:
            out.append(leaf)

    for leaf in leaves:
        visit(leaf, dtypes.get(leaf.name))
    return out


def nesting_problems(names: list[str]) -> list[tuple[str, str]]:
    """(field, problem) for dotted names that collide with a plain field of the same prefix."""
    problems = []
    taken = set(names)
    for name in names:
        parts = name.split(".")
        if any(not p for p in parts):
            problems.append((name, "empty segment in target field name"))
            continue
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix in taken:
                problems.append((name, f"'{prefix}' is also a plain field; it cannot nest"))
    return problems


def nest(leaves: list[tuple[tuple[str, ...], pl.Expr]]) -> list[pl.Expr]:
    """Top-level output expressions: dotted paths grouped into struct columns, in order."""
    groups: dict[str, list[tuple[tuple[str, ...], pl.Expr]]] = {}
    for path, expr in leaves:
        groups.setdefault(path[0], []).append((path[1:], expr))
    out = []
    for top, members in groups.items():
        if len(members) == 1 and not members[0][0]:
            out.append(members[0][1].alias(top))
        else:
            out.append(pl.struct(nest(members)).alias(top))
    return out
