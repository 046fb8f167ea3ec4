"""Which target fields identify a row, and which source columns they come from.

Deletes carry only the key, so every target key field must be computable from the source key
columns alone. ``key`` in the mapping may name source columns (``key: [id]`` with
``_id: id``) or target fields (``key: [_id]``); without it the source's primary key / ``_id``
is used. A source key column that no field carries is added as a pass-through field of the
same name, so a ``fields`` list never silently loses the row identity.
"""

from __future__ import annotations

from syncengine.mappings.compiler import Compiled
from syncengine.mappings.errors import ExpressionError
from syncengine.mappings.shape import Leaf

from syncengine.config.models import MappingConfig


def _top(dep: str) -> str:
    return dep.split(".", 1)[0]


def _pick(candidates: list[str], source_column: str) -> str:
    for preferred in ("_id", source_column):
        if preferred in candidates:
            return preferred
    return candidates[0]


def resolve_key(
    mapping: MappingConfig,
    leaves: list[Leaf],
    compiled: dict[str, Compiled],
    source_key: tuple[str, ...],
) -> tuple[list[Leaf], tuple[str, ...], tuple[str, ...]]:
    """(leaves, target key, source key); may add pass-through leaves for key columns."""
    names = [leaf.name for leaf in leaves]
    declared = tuple(mapping.key or ())
    if declared and mapping.fields and all(k in compiled for k in declared):
        src: list[str] = []
        for k in declared:
            src += sorted({_top(d) for d in compiled[k].deps} - set(src))
        if not src:
            raise ExpressionError(f"key field(s) {', '.join(declared)} read no source column")
        return leaves, declared, tuple(src)
    src_key = declared or source_key
    if not mapping.fields:
        lost = [k for k in src_key if k not in names]
        if lost:
            raise ExpressionError(f"key column(s) {', '.join(lost)} are excluded")
        return leaves, tuple(src_key), tuple(src_key)
    key_set = set(src_key)
    composite = compiled.get("_id")
    if composite is not None and len(src_key) > 1:
        tops = {_top(d) for d in composite.deps}
        if tops == key_set:
            return leaves, ("_id",), tuple(src_key)
    target: list[str] = []
    leaves = list(leaves)
    for column in src_key:
        plain = [n for n, c in compiled.items() if c.column == column and "." not in n]
        if plain:
            target.append(_pick(plain, column))
            continue
        if column in compiled:
            raise ExpressionError(
                f"field '{column}' has the name of the key column but computes something else"
            )
        leaves.append(Leaf(column, source=column, literal=True))
        target.append(column)
    for name in target:
        if name in compiled:
            extra = {_top(d) for d in compiled[name].deps} - key_set
            if extra:
                raise ExpressionError(
                    f"key field '{name}' reads non-key column(s) {', '.join(sorted(extra))}; "
                    "deletes carry only the key"
                )
    return leaves, tuple(target), tuple(src_key)
