"""Compiling a mapping against a source schema: once per schema, cached.

:func:`compile_mapping` resolves every ``fields`` expression and the ``filter`` against the
source schema, decides the output leaves (pass-through, renames, computed, nested, flattened)
and the target key, and reports *every* problem at once as a :class:`MappingError` whose lines
start with the YAML path. The result, :class:`CompiledMapping`, is reused for every batch with
that schema; a batch with another schema (a column added mid-stream) is compiled again through
the same cache, so the runtime never has to notice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
from syncengine.mappings.carried import native_schema
from syncengine.mappings.compiler import Compiled, ExprCompiler, Missing
from syncengine.mappings.errors import ExpressionError, MappingError
from syncengine.mappings.shape import ColumnRef, Leaf, flatten, nesting_problems

from syncengine.changes import is_data_column
from syncengine.config.models import MappingConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlglot import exp
    from syncengine.mappings.apply import MappingResult, Plan, Shape

    from syncengine.changes import ChangeBatch

_CACHE: OrderedDict[tuple[object, ...], CompiledMapping] = OrderedDict()
_CACHE_SIZE = 256


def mapping_path(pipeline: str, mapping: MappingConfig, index: int | None) -> str:
    where = str(index) if index is not None else f"{mapping.source}->{mapping.target_name}"
    return f"pipelines.{pipeline}.mappings[{where}]"


def polars_schema(schema: pa.Schema) -> pl.Schema:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


def data_schema(schema: pa.Schema) -> pa.Schema:
    """Row-image columns only (a batch's full schema is accepted too)."""
    return pa.schema([f for f in schema if is_data_column(f.name)])


@dataclass
class CompiledMapping:
    """A mapping compiled for one source schema. Apply it to every batch of that source."""

    pipeline: str
    mapping: MappingConfig
    source_schema: pa.Schema
    source_key: tuple[str, ...]
    #: target key columns (after renames)
    key: tuple[str, ...]
    leaves: list[Leaf]
    compiled: dict[str, Compiled]
    filter: Compiled | None
    missing: Missing
    index: int | None = None
    #: (filter, dialect) of the other mappings of the same source table into the same target
    #: table (None: one without a filter): a row they keep is not deleted on leaving this
    #: mapping's filter (:func:`syncengine.mappings.apply.build_plan`)
    kept_elsewhere: tuple[tuple[str | None, str], ...] = ()
    target_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    _variants: dict[Shape, Plan] = field(default_factory=dict, repr=False)
    #: whether the plan maps every column to itself (mappings/passthrough.py); None: not known
    _passes: bool | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.mapping.source} -> {self.mapping.target_name}"

    def variant(self, shape: Shape, build: Callable[[CompiledMapping, Shape], Plan]) -> Plan:
        """The plan for batches of ``shape`` (their ops, unsent and before-image columns),
        built by ``build`` on first use and kept with this compiled mapping."""
        found = self._variants.get(shape)
        if found is None:
            found = self._variants[shape] = build(self, shape)
        return found

    def passes_through(self) -> bool:
        """Whether batches can skip the Polars plan (:mod:`syncengine.mappings.passthrough`)."""
        if self._passes is None:
            from syncengine.mappings.passthrough import passes_through

            self._passes = passes_through(self)
        return self._passes

    def compiler(self, ref: ColumnRef = pl.col) -> ExprCompiler:
        return new_compiler(self.source_schema, self.mapping.dialect, self.missing, ref)

    def leaf_expr(self, leaf: Leaf, compiler: ExprCompiler) -> Compiled:
        """A leaf compiled with ``compiler`` (used for before-image variants)."""
        if leaf.text is not None:
            base = compiler.compile(leaf.text)
        else:
            assert leaf.source is not None
            base = Compiled(compiler.ref(leaf.source), frozenset({leaf.source}))
        return leaf.finish(base)

    def apply(self, batch: ChangeBatch) -> MappingResult:
        """Map one batch (recompiling through the cache if its schema differs). Columns the
        batch carries as Postgres text that an expression reads are read natively first
        (:mod:`syncengine.mappings.carried`)."""
        from syncengine.mappings.apply import MappingResult, apply_mapping
        from syncengine.mappings.carried import restore

        batch, set_aside = restore(self.pipeline, self.mapping, batch)
        plan = self
        schema = data_schema(batch.data.schema)
        if not schema.equals(self.source_schema):
            plan = compile_mapping(
                self.pipeline, self.mapping, schema, self.source_key, index=self.index
            )
        result = apply_mapping(plan, batch)
        if set_aside:
            result = MappingResult(result.batch, set_aside + result.dead_letters)
        return result


def text_numbers(schema: pa.Schema) -> frozenset[str]:
    """Text columns whose metadata says they hold exact numbers."""
    found = set()
    for f in schema:
        meta = f.metadata or {}
        numeric = meta.get(b"pg_type", b"").startswith(b"numeric")
        if (numeric or meta.get(b"bson_type") == b"decimal") and pa.types.is_string(f.type):
            found.add(f.name)
    return frozenset(found)


def new_compiler(
    schema: pa.Schema, dialect: str, missing: Missing, ref: ColumnRef = pl.col
) -> ExprCompiler:
    return ExprCompiler(
        polars_schema(schema), dialect, missing, ref=ref, text_numbers=text_numbers(schema)
    )


def _auto_missing(schema: pa.Schema, key: tuple[str, ...]) -> Missing:
    """Documents (Mongo) may lack a field in a whole batch: read it as null there."""
    documents = key == ("_id",) or any(b"bson_type" in (f.metadata or {}) for f in schema)
    return "null" if documents else "error"


def compile_mapping(
    pipeline: str,
    mapping: MappingConfig,
    source_schema: pa.Schema,
    source_key: tuple[str, ...],
    *,
    index: int | None = None,
    missing: Missing | None = None,
    kept_elsewhere: tuple[tuple[str | None, str], ...] = (),
) -> CompiledMapping:
    """Compile ``mapping`` for batches whose row image has ``source_schema`` (cached).

    ``missing`` says what an unknown column is: ``"error"`` (tables) or ``"null"`` (documents,
    where a field may be absent from a whole batch). By default documents are recognised by a
    ``_id`` key or ``bson_type`` field metadata. ``kept_elsewhere``: see
    :attr:`CompiledMapping.kept_elsewhere`.
    """
    # columns carried as text that an expression reads are read natively (apply restores them)
    schema = native_schema(mapping, data_schema(source_schema))
    missing = missing or _auto_missing(schema, tuple(source_key))
    cache_key = (
        pipeline,
        mapping.model_dump_json(),
        schema.serialize().to_pybytes(),
        tuple(source_key),
        index,
        missing,
        kept_elsewhere,
    )
    found = _CACHE.get(cache_key)
    if found is not None:
        _CACHE.move_to_end(cache_key)
        return found
    compiled = _compile(pipeline, mapping, schema, tuple(source_key), index, missing)
    compiled.kept_elsewhere = kept_elsewhere
    _CACHE[cache_key] = compiled
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled


def _compile(
    pipeline: str,
    mapping: MappingConfig,
    schema: pa.Schema,
    source_key: tuple[str, ...],
    index: int | None,
    missing: Missing,
) -> CompiledMapping:
    from syncengine.mappings.apply import target_schema_of
    from syncengine.mappings.keys import resolve_key

    path = mapping_path(pipeline, mapping, index)
    problems: list[str] = []
    compiler = new_compiler(schema, mapping.dialect, missing)
    leaves: list[Leaf] = []
    compiled: dict[str, Compiled] = {}
    dtypes: dict[str, pl.DataType] = {}
    excluded = set(mapping.exclude)
    if mapping.fields:
        for name, text in mapping.fields.items():
            if name in excluded:
                continue
            try:
                result = compiler.compile(text)
                dtype = compiler.result_type(_root(text, mapping.dialect), result)
            except ExpressionError as error:
                problems.append(f"{path}.fields.{name}: {error.describe()}")
                continue
            if result.column is not None and result.column in schema.names:
                leaves.append(Leaf(name, source=result.column))  # a rename passes unchanged
            else:
                leaves.append(Leaf(name, text=text, metadata=_metadata(result)))
            compiled[name] = result
            if dtype is not None:
                dtypes[name] = dtype
        for name, why in nesting_problems(list(mapping.fields)):
            problems.append(f"{path}.fields.{name}: {why}")
    else:
        for f in schema:
            if f.name not in excluded:
                leaves.append(Leaf(f.name, source=f.name, literal=True))
                dtypes[f.name] = compiler.dtype(pl.col(f.name)) or pl.Null()
    filter_ = None
    if mapping.filter:
        try:
            filter_ = compiler.compile(mapping.filter)
            dtype = compiler.result_type(_root(mapping.filter, mapping.dialect), filter_)
            if dtype is not None and dtype not in (pl.Boolean, pl.Null):
                raise ExpressionError(f"the filter must be a condition, not {dtype}")
        except ExpressionError as error:
            problems.append(f"{path}.filter: {error.describe()}")
    target_key: tuple[str, ...] = ()
    if not problems:
        try:
            leaves, target_key, source_key = resolve_key(mapping, leaves, compiled, source_key)
        except ExpressionError as error:
            problems.append(f"{path}.key: {error.message}")
    if problems:
        raise MappingError(problems)
    leaves = [_source_metadata(leaf, schema) for leaf in leaves]
    if mapping.flatten:  # a table target: dotted names become parent_child too
        dtypes = {name.replace(".", "_"): dtype for name, dtype in dtypes.items()}
        leaves = [replace(leaf, name=leaf.name.replace(".", "_")) for leaf in leaves]
        leaves = flatten(leaves, dtypes, schema)
        flat_excluded = {name.replace(".", "_") for name in excluded}
        leaves = [leaf for leaf in leaves if leaf.name not in flat_excluded - set(target_key)]
    plan = CompiledMapping(
        pipeline, mapping, schema, source_key, target_key, leaves, {}, filter_, missing, index
    )
    plan.compiled = {leaf.name: plan.leaf_expr(leaf, compiler) for leaf in leaves}
    plan.target_schema = target_schema_of(plan)
    return plan


def _root(text: str, dialect: str) -> exp.Expression:
    from syncengine.mappings.parse import parse_expression

    return parse_expression(text, dialect)


def _metadata(result: Compiled) -> dict[bytes, bytes] | None:
    if result.pg_type is not None:
        return {b"pg_type": result.pg_type.encode()}
    return None


def _source_metadata(leaf: Leaf, schema: pa.Schema) -> Leaf:
    """A pass-through leaf keeps its source field's metadata (pg_type, bson_type)."""
    if leaf.source is None or leaf.metadata is not None or leaf.source not in schema.names:
        return leaf
    meta = schema.field(leaf.source).metadata
    return replace(leaf, metadata=dict(meta)) if meta else leaf
