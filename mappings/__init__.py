"""Mappings: declarative field mappings and SQL expressions compiled to vectorized Polars plans.

The runtime calls :func:`compile_mapping` once per source schema (cached) and
:meth:`CompiledMapping.apply` on every batch; ``validate`` calls :func:`check_config` (no
source needed) and :func:`check_columns` (with the source schema). The same ``filter`` is pushed
into the Postgres snapshot (:func:`to_postgres_where`) and the Mongo change stream / snapshot
(:func:`to_mongo_match`). See docs/mappings.md.
"""

from __future__ import annotations

from syncengine.mappings.apply import MappingResult
from syncengine.mappings.check import check_columns, check_config, check_expression
from syncengine.mappings.errors import ExpressionError, MappingError
from syncengine.mappings.plan import CompiledMapping, compile_mapping
from syncengine.mappings.pushdown import to_mongo_match, to_mongo_stream_match, to_postgres_where

__all__ = [
    "CompiledMapping",
    "ExpressionError",
    "MappingError",
    "MappingResult",
    "check_columns",
    "check_config",
    "check_expression",
    "compile_mapping",
    "to_mongo_match",
    "to_mongo_stream_match",
    "to_postgres_where",
]
