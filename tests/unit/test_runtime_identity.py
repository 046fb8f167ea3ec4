"""An identity mapping's target table, known without the compiler, is the compiled one."""

from __future__ import annotations

import pyarrow as pa
import pytest
from syncengine.mappings import compile_mapping

from syncengine.config.models import MappingConfig
from syncengine.runtime.identity import identity_spec
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.ddl import create_table_sql


def pg(name: str, type_: pa.DataType, pg_type: str) -> pa.Field:
    return pa.field(name, type_, metadata={"pg_type": pg_type})


# the Arrow types the Postgres source reads these columns as, with their pg_type
SCHEMA = pa.schema(
    [
        pg("id", pa.int64(), "bigint"),
        pg("qty", pa.int32(), "integer"),
        pg("name", pa.string(), "text"),
        pg("price", pa.decimal128(12, 2), "numeric(12,2)"),
        pg("huge", pa.string(), "numeric"),
        pg("created", pa.timestamp("us", "UTC"), "timestamp with time zone"),
        pg("active", pa.bool_(), "boolean"),
        pg("attrs", pa.string(), "jsonb"),
        pg("ref", pa.string(), "uuid"),
        pg("tags", pa.list_(pa.string()), "text[]"),
        pg("span", pa.string(), "interval"),
        pg("raw", pa.binary(), "bytea"),
    ]
)


def ddl(spec: TableSpec) -> str:
    return create_table_sql("public", spec).as_string(None)


def compiled_spec(mapping: MappingConfig, schema: pa.Schema, key: tuple[str, ...]) -> TableSpec:
    compiled = compile_mapping("p", mapping, schema, key)
    return TableSpec(mapping.target_name, tuple(compiled.key), compiled.target_schema)


@pytest.mark.parametrize(
    "mapping",
    [
        MappingConfig(source="public.t"),
        MappingConfig(source="public.t", target="copy_of_t"),
        MappingConfig(source="public.t", key=["ref"]),
        MappingConfig(source="public.t", filter="qty > 3 AND name <> 'x'"),
    ],
    ids=["plain", "renamed table", "declared key", "filtered"],
)
def test_the_table_is_the_one_the_compiler_describes(mapping: MappingConfig) -> None:
    known = identity_spec(mapping, SCHEMA, ("id",))
    assert known is not None
    compiled = compiled_spec(mapping, SCHEMA, ("id",))
    assert known.name == compiled.name
    assert known.key == compiled.key
    assert known.schema.names == compiled.schema.names
    assert [f.metadata for f in known.schema] == [f.metadata for f in compiled.schema]
    assert ddl(known) == ddl(compiled)


def test_a_composite_key_is_kept_in_order() -> None:
    known = identity_spec(MappingConfig(source="public.t"), SCHEMA, ("ref", "id"))
    assert known is not None and known.key == ("ref", "id")
    assert ddl(known) == ddl(compiled_spec(MappingConfig(source="public.t"), SCHEMA, ("ref", "id")))


def test_metadata_columns_of_a_batch_schema_are_not_table_columns() -> None:
    batch_schema = SCHEMA.append(pa.field("_op", pa.string())).append(pa.field("_pos", pa.string()))
    known = identity_spec(MappingConfig(source="public.t"), batch_schema, ("id",))
    assert known is not None and known.schema.names == SCHEMA.names


@pytest.mark.parametrize(
    ("mapping", "schema", "key"),
    [
        (MappingConfig(source="public.t", fields={"id": "id"}), SCHEMA, ("id",)),
        (MappingConfig(source="public.t", exclude=["raw"]), SCHEMA, ("id",)),
        (MappingConfig(source="public.t", flatten=True), SCHEMA, ("id",)),
        (MappingConfig(source="public.t", key=["nope"]), SCHEMA, ("id",)),
        (MappingConfig(source="public.t"), SCHEMA, ()),
        (
            MappingConfig(source="public.t"),
            SCHEMA.append(pa.field("untyped", pa.int64())),
            ("id",),
        ),
    ],
    ids=["fields", "exclude", "flatten", "unknown key", "no key", "no pg_type"],
)
def test_anything_else_is_left_to_the_compiler(
    mapping: MappingConfig, schema: pa.Schema, key: tuple[str, ...]
) -> None:
    assert identity_spec(mapping, schema, key) is None
