"""Config-time checks of mapping expressions, every problem at once with its YAML path.

:func:`check_config` needs no source: syntax, unknown or unsupported functions, dotted target
names that collide, an unknown dialect. Unknown columns need the source schema, so
:func:`check_columns` (called by ``validate`` when it can read the schema) compiles a mapping
fully and returns what :func:`~syncengine.mappings.compile_mapping` would refuse.
"""

from __future__ import annotations

import pyarrow as pa
from syncengine.mappings.compiler import ExprCompiler
from syncengine.mappings.errors import ExpressionError, MappingError
from syncengine.mappings.parse import dialect_of, parse_expression
from syncengine.mappings.plan import compile_mapping, mapping_path
from syncengine.mappings.shape import nesting_problems

from syncengine.changes import META_COLUMNS
from syncengine.config.models import Config, MappingConfig


def check_expression(text: str, dialect: str = "postgres") -> list[str]:
    """Problems of one expression without a schema (empty when it compiles)."""
    try:
        ExprCompiler(None, dialect).compile(text)
    except ExpressionError as error:
        return [error.describe()]
    return []


def _filter_problems(text: str, dialect: str) -> list[str]:
    problems = check_expression(text, dialect)
    if problems:
        return problems
    tree = parse_expression(text, dialect)
    from sqlglot import exp

    meta = sorted({c.name for c in tree.find_all(exp.Column) if c.name in META_COLUMNS})
    if meta:
        return [f"the filter reads change metadata ({', '.join(meta)}); it must read row fields"]
    return []


def check_mapping(pipeline: str, index: int, mapping: MappingConfig) -> list[str]:
    """Schema-free problems of one mapping, each line starting with its YAML path."""
    path = mapping_path(pipeline, mapping, index)
    try:
        dialect_of(mapping.dialect)
    except ExpressionError as error:
        return [f"{path}.dialect: {error.describe()}"]
    problems: list[str] = []
    for name, text in (mapping.fields or {}).items():
        problems += [f"{path}.fields.{name}: {p}" for p in check_expression(text, mapping.dialect)]
    for name, why in nesting_problems(list(mapping.fields or {})):
        problems.append(f"{path}.fields.{name}: {why}")
    if mapping.filter:
        found = _filter_problems(mapping.filter, mapping.dialect)
        problems += [f"{path}.filter: {p}" for p in found]
    return problems


def check_config(config: Config) -> list[str]:
    """Every problem in every mapping's ``fields``/``filter`` (no source needed)."""
    problems: list[str] = []
    for pipeline, spec in config.pipelines.items():
        for index, mapping in enumerate(spec.mappings):
            problems += check_mapping(pipeline, index, mapping)
    return problems


def check_columns(
    pipeline: str,
    index: int,
    mapping: MappingConfig,
    source_schema: pa.Schema,
    source_key: tuple[str, ...] = (),
) -> list[str]:
    """Problems that need the source schema too: unknown columns, type errors, the key."""
    problems = check_mapping(pipeline, index, mapping)
    if problems:
        return problems
    try:
        compile_mapping(pipeline, mapping, source_schema, source_key, index=index, missing="error")
    except MappingError as error:
        return list(error.problems)
    return []
