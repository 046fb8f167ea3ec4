"""Integer leaves of a nested Arrow type that a schemaless source's values hold as doubles.

A Mongo sub-document's ``amount`` may be an int in the batch at hand and a double in the
document the target stores (a Node.js driver writes 5 as an int, 5.5 as a double). Read back
under the batch's type, 0.5 would silently become 0 (Arrow truncates inside structs).
"""

from __future__ import annotations

import pyarrow as pa

#: the largest integer magnitude every double holds exactly (2^53: 53 bits of mantissa)
EXACT_IN_DOUBLE = 2**53


def floats_where(base: pa.DataType, seen: pa.DataType) -> pa.DataType:
    """``base`` with each integer leaf that ``seen`` (the type inferred from stored values)
    holds as floating point made ``float64``; struct members are matched by name, list items
    with list items; everything else as in ``base``."""
    if pa.types.is_integer(base):
        return pa.float64() if pa.types.is_floating(seen) else base
    if pa.types.is_struct(base) and pa.types.is_struct(seen):
        names = {seen.field(i).name: seen.field(i).type for i in range(seen.num_fields)}
        members = []
        for i in range(base.num_fields):
            member = base.field(i)
            if member.name in names:
                member = member.with_type(floats_where(member.type, names[member.name]))
            members.append(member)
        return pa.struct(members)
    if _is_list(base) and _is_list(seen):
        item = base.value_field
        wider = item.with_type(floats_where(item.type, seen.value_type))
        return pa.large_list(wider) if pa.types.is_large_list(base) else pa.list_(wider)
    return base


def widens_to_floats(base: pa.DataType, other: pa.DataType) -> bool:
    """Whether ``other`` is ``base`` with some integers (top-level, or inside it) as floats:
    the only difference :func:`floats_where` makes."""
    return bool(other != base and floats_where(base, other) == other)


def holds_integers(t: pa.DataType) -> bool:
    """Whether an integer sits inside ``t`` (a struct member or list item, at any depth)."""
    if pa.types.is_struct(t):
        return any(_integer_or_nested(t.field(i).type) for i in range(t.num_fields))
    if _is_list(t):
        return _integer_or_nested(t.value_type)
    return False


def _integer_or_nested(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t)) or holds_integers(t)


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))
