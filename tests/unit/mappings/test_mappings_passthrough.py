"""An identity mapping applied on the Arrow batch (syncengine.mappings.passthrough) gives the
Polars plan's rows exactly: same columns in the same order, same values (nulled deletes,
unsent values and flags, before-images), same field metadata."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from syncengine.mappings import compile_mapping
from syncengine.mappings.apply import apply_mapping

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), metadata={"pg_type": "bigint"}),
        pa.field("name", pa.string(), metadata={"pg_type": "text"}),
        pa.field("qty", pa.int32(), metadata={"pg_type": "integer"}),
    ]
)

change = st.tuples(
    st.sampled_from(["c", "u", "d", "r", "t", "u"]),
    st.integers(0, 5),
    st.one_of(st.none(), st.text(max_size=3)),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.booleans(),
)


def make(changes, with_unsent: bool, with_before: bool) -> ChangeBatch:
    rows = pa.Table.from_pylist(
        [{"id": k, "name": name, "qty": qty} for _, k, name, qty, _ in changes], schema=SCHEMA
    )
    unsent = {"name": [u and op == "u" for op, *_, u in changes]} if with_unsent else None
    return ChangeBatch.build(
        "public.t",
        rows,
        ops=[c[0] for c in changes],
        positions=[f"{i:04d}" for i in range(len(changes))],
        key=["id"],
        unsent=unsent,
        before=rows.select(["id", "qty"]) if with_before else None,
    )


def plain(batch: ChangeBatch) -> tuple[list[str], list[dict], list[object]]:
    schema = batch.data.schema
    return batch.data.column_names, batch.data.to_pylist(), [f.metadata for f in schema]


@settings(max_examples=200, deadline=None)
@given(st.lists(change, min_size=1, max_size=25), st.booleans(), st.booleans())
def test_identity_on_arrow_equals_the_polars_plan(changes, with_unsent, with_before):
    batch = make(changes, with_unsent, with_before)
    compiled = compile_mapping("p", MappingConfig(source="public.t"), SCHEMA, ("id",))
    assert compiled.passes_through()
    through_polars = dataclasses.replace(compiled, _passes=False, _variants={})
    fast = apply_mapping(compiled, batch)
    slow = apply_mapping(through_polars, batch)
    assert plain(fast.batch) == plain(slow.batch)
    assert fast.dead_letters == slow.dead_letters == []
    assert (fast.batch.table, fast.batch.key, fast.batch.meta) == (
        slow.batch.table, slow.batch.key, slow.batch.meta,
    )  # fmt: skip


def test_mappings_that_change_something_take_the_plan():
    for config in (
        MappingConfig(source="public.t", exclude=["qty"]),
        MappingConfig(source="public.t", filter="qty > 0"),
        MappingConfig(source="public.t", fields={"id": "id", "name": "upper(name)", "qty": "qty"}),
        MappingConfig(source="public.t", fields={"id": "id", "label": "name", "qty": "qty"}),
    ):
        assert not compile_mapping("p", config, SCHEMA, ("id",)).passes_through(), config
