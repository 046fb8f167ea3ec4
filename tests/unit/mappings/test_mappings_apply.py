"""Applying compiled mappings to ChangeBatches: ops, filters, unsent, deletes, dead letters."""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest
from syncengine.mappings import MappingError, compile_mapping

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), metadata={"pg_type": "bigint"}),
        pa.field("email", pa.string(), metadata={"pg_type": "text"}),
        pa.field("amount_cents", pa.int64(), metadata={"pg_type": "bigint"}),
        pa.field("status", pa.string(), metadata={"pg_type": "text"}),
        pa.field("notes", pa.string(), metadata={"pg_type": "text"}),
    ]
)


def batch(rows: list[dict], ops: list[str], unsent=None, before=None) -> ChangeBatch:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return ChangeBatch.build(
        "public.orders",
        table,
        ops=ops,
        positions=[f"{i:04d}" for i in range(len(rows))],
        key=["id"],
        unsent=unsent,
        before=before,
    )


def row(id: int, email="A@x.org", cents=1000, status="paid", notes=None) -> dict:
    return {"id": id, "email": email, "amount_cents": cents, "status": status, "notes": notes}


def mapping(**kw) -> MappingConfig:
    return MappingConfig(source="public.orders", **kw)


def run(m: MappingConfig, b: ChangeBatch):
    result = compile_mapping("shop", m, SCHEMA, ("id",)).apply(b)
    return pl.from_arrow(result.batch.data), result


def test_pass_through_keeps_all_fields_metadata_and_meta() -> None:
    b = batch([row(1), row(2)], ["c", "u"])
    b = ChangeBatch(b.table, b.data, b.key, {"resume": "0001"})
    result = compile_mapping("shop", mapping(exclude=["notes"]), SCHEMA, ("id",)).apply(b)
    out = result.batch
    assert out.table == "orders" and out.key == ("id",) and out.meta == {"resume": "0001"}
    assert out.data_columns == ["id", "email", "amount_cents", "status"]
    assert out.data.schema.field("amount_cents").metadata == {b"pg_type": b"bigint"}
    assert out.data.column("_op").to_pylist() == ["c", "u"]
    assert out.data.column("_pos").to_pylist() == ["0000", "0001"]


def test_fields_rename_compute_and_nest() -> None:
    m = mapping(
        target="orders_doc",
        key=["id"],
        fields={
            "_id": "id",
            "customer.email": "lower(email)",
            "customer.domain": "substring(email, 3)",
            "total": "amount_cents / 100.0",
        },
    )
    frame, result = run(m, batch([row(1, email="A@X.org", cents=1234)], ["c"]))
    assert result.batch.key == ("_id",)
    assert frame.select("_id", "customer", "total").to_dicts() == [
        {"_id": 1, "customer": {"email": "a@x.org", "domain": "X.org"}, "total": 12.34}
    ]
    assert result.batch.data.schema.field("_id").metadata == {b"pg_type": b"bigint"}


def test_filter_turns_non_matching_updates_and_inserts_into_deletes_and_drops_reads() -> None:
    m = mapping(filter="status <> 'draft'", fields={"id": "id", "status": "upper(status)"})
    rows = [row(1), row(2, status="draft"), row(3, status="draft"), row(4, status="draft")]
    rows.append(row(5))
    frame, _ = run(m, batch(rows, ["u", "u", "c", "r", "d"]))
    assert frame.select("id", "_op", "status").rows() == [
        (1, "u", "PAID"),
        (2, "d", None),  # stopped matching: removed from the target
        (3, "d", None),  # a (compacted) insert that does not match: make sure it is absent
        (5, "d", None),  # deletes always pass, key only
    ]


def test_a_row_a_sibling_mapping_keeps_is_not_deleted_on_leaving_the_filter() -> None:
    """Mappings of one source table into one target table, split by filters: a row leaving
    this one's filter for a sibling's is the sibling's row (it upserts it in the same group)."""
    m = mapping(filter="status = 'paid'")
    rows = [row(1), row(2, status="draft"), row(3, status="void"), row(4, status="draft")]
    b = batch(rows, ["u", "u", "u", "d"])

    def ops(kept: tuple) -> list[tuple]:
        plan = compile_mapping("shop", m, SCHEMA, ("id",), kept_elsewhere=kept)
        return pl.from_arrow(plan.apply(b).batch.data).select("id", "_op").rows()

    assert ops(()) == [(1, "u"), (2, "d"), (3, "d"), (4, "d")]
    assert ops((("status = 'draft'", "postgres"),)) == [(1, "u"), (3, "d"), (4, "d")]
    # a sibling without a filter keeps every row: none leaves the target
    assert ops((("status = 'draft'", "postgres"), (None, "postgres"))) == [(1, "u"), (4, "d")]
    # a sibling's filter on a column the row did not send: kept as it is, not deleted
    unsent = batch(rows[1:2], ["u"], unsent={"notes": [True]})
    sibling = (("notes = 'a'", "postgres"),)
    plan = compile_mapping("shop", m, SCHEMA, ("id",), kept_elsewhere=sibling)
    assert pl.from_arrow(plan.apply(unsent).batch.data).height == 0


def test_truncate_passes_and_null_filter_is_no_match() -> None:
    m = mapping(filter="amount_cents > 5")
    frame, _ = run(m, batch([row(1, cents=None), row(2), row(3)], ["r", "r", "t"]))
    assert frame.select("id", "_op").rows() == [(2, "r"), (3, "t")]
    assert frame.row(1, named=True)["email"] is None  # a truncate carries no data


def test_delete_carries_only_the_key() -> None:
    m = mapping(fields={"_id": "id", "mail": "lower(email)", "n": "notes::int"})
    frame, result = run(m, batch([row(7, notes="bad")], ["d"]))
    assert frame.select("_id", "mail", "n", "_op").rows() == [(7, None, None, "d")]
    assert result.dead_letters == []  # the bad value is not part of a delete


def test_unsent_source_column_makes_computed_fields_unsent() -> None:
    m = mapping(fields={"id": "id", "mail": "lower(email)", "both": "email || status"})
    rows = [row(1, email=None), row(2, email="B@x")]
    frame, _ = run(m, batch(rows, ["u", "u"], unsent={"email": [True, False]}))
    assert frame.select("mail", "both", "_unsent.mail", "_unsent.both").rows() == [
        (None, None, True, True),
        ("b@x", "B@xpaid", False, False),
    ]
    assert "_unsent.id" not in frame.columns


def test_unsent_pass_through_is_renamed() -> None:
    m = mapping(fields={"id": "id", "mail": "email"})
    frame, _ = run(m, batch([row(1, email=None)], ["u"], unsent={"email": [True]}))
    assert frame["_unsent.mail"].to_list() == [True]


def test_filter_on_unsent_column_uses_before_image_or_keeps_update() -> None:
    m = mapping(filter="status = 'paid'")
    rows = [row(1, status=None), row(2, status=None)]
    unsent = {"status": [True, True]}
    before = pa.Table.from_pylist(
        [{"id": 1, "status": "paid"}, {"id": 2, "status": "draft"}],
        schema=pa.schema([("id", pa.int64()), ("status", pa.string())]),
    )
    frame, _ = run(m, batch(rows, ["u", "u"], unsent=unsent, before=before))
    assert frame.select("id", "_op").rows() == [(1, "u"), (2, "d")]
    assert frame["_before.id"].to_list() == [1, 2]
    # without a before-image the row is kept as an update, unchanged
    frame, _ = run(m, batch(rows[:1], ["u"], unsent={"status": [True]}))
    assert frame.select("id", "_op", "_unsent.status").rows() == [(1, "u", True)]


def test_bad_values_become_dead_letters_rest_continues() -> None:
    m = mapping(
        fields={"id": "id", "n": "notes::int", "ratio": "amount_cents / (id - 2)"},
        filter="notes is null or notes::int >= 0",
    )
    rows = [row(1, notes="5"), row(2, notes="6"), row(3, notes="x"), row(4, notes=None)]
    frame, result = run(m, batch(rows, ["c", "c", "c", "c"]))
    assert frame.select("id", "n", "ratio").rows() == [(1, 5, -1000), (4, None, 500)]
    letters = sorted(result.dead_letters, key=lambda d: d.position or "")
    assert [d.position for d in letters] == ["0001", "0002"]
    assert letters[0].reason == "mapping public.orders -> orders, field ratio: division by zero"
    assert letters[1].reason.endswith("field filter: cannot cast value to integer")
    payload = json.loads(letters[1].payload)
    assert payload["notes"] == "x" and payload["id"] == 3 and payload["_op"] == "c"
    assert letters[0].stage == "mapping" and letters[0].pipeline == "shop"


def test_cast_in_untaken_case_branch_is_not_a_failure() -> None:
    m = mapping(fields={"id": "id", "n": "case when notes ~ '^[0-9]+$' then notes::int end"})
    frame, result = run(m, batch([row(1, notes="12"), row(2, notes="zz")], ["c", "c"]))
    assert frame["n"].to_list() == [12, None] and result.dead_letters == []


def test_routing_two_mappings_read_one_source() -> None:
    big = mapping(target="big_orders", filter="amount_cents >= 100000")
    small = mapping(target="small_orders", filter="amount_cents < 100000")
    rows = [row(1, cents=150000), row(2, cents=50), row(3, cents=100000)]
    b = batch(rows, ["r", "r", "u"])
    big_out, _ = run(big, b)
    small_out, _ = run(small, b)
    assert big_out.select("id", "_op").rows() == [(1, "r"), (3, "u")]
    assert small_out.select("id", "_op").rows() == [(2, "r"), (3, "d")]


def test_schema_change_recompiles_and_caches() -> None:
    m = mapping(fields={"id": "id", "total": "amount_cents::numeric(12,2) / 100"})
    first = compile_mapping("shop", m, SCHEMA, ("id",))
    assert compile_mapping("shop", m, SCHEMA, ("id",)) is first
    wider = SCHEMA.append(pa.field("extra", pa.string()))
    rows = [{**row(1, cents=250), "extra": "x"}]
    grown = ChangeBatch.build(
        "public.orders", pa.Table.from_pylist(rows, schema=wider), ops=["c"], positions=["1"]
    )
    out = first.apply(grown).batch
    assert out.data.column("total").to_pylist() == [Decimal("2.5")]
    assert out.data.schema.field("total").metadata is None  # computed: no source type


def test_target_schema_matches_output() -> None:
    m = mapping(fields={"id": "id", "c.mail": "email", "t": "amount_cents::numeric(12,2)"})
    compiled = compile_mapping("shop", m, SCHEMA, ("id",))
    out = compiled.apply(batch([row(1)], ["c"])).batch
    assert out.rows.schema.equals(compiled.target_schema, check_metadata=True)
    assert compiled.target_schema.field("t").metadata == {b"pg_type": b"numeric(12,2)"}


def test_key_must_be_computable_from_key_columns() -> None:
    m = mapping(key=["_id"], fields={"_id": "email"})
    compiled = compile_mapping("shop", m, SCHEMA, ("id",))
    assert compiled.key == ("_id",)  # key declared as a target field: its source becomes the key
    bad = mapping(fields={"id": "id + amount_cents"})
    with pytest.raises(MappingError) as info:
        compile_mapping("shop", bad, SCHEMA, ("id",), index=0)
    assert info.value.problems == [
        "pipelines.shop.mappings[0].key: field 'id' has the name of the key column but "
        "computes something else"
    ]


def test_key_column_is_added_when_fields_leave_it_out() -> None:
    compiled = compile_mapping("shop", mapping(fields={"mail": "email"}), SCHEMA, ("id",))
    assert compiled.key == ("id",)
    assert compiled.target_schema.names == ["mail", "id"]


def test_composite_key_into_one_id() -> None:
    m = mapping(key=["id", "status"], fields={"_id": "concat(id, '-', status)", "s": "status"})
    compiled = compile_mapping("shop", m, SCHEMA, ("id",))
    assert compiled.key == ("_id",)
    frame = pl.from_arrow(compiled.apply(batch([row(3)], ["d"])).batch.data)
    assert frame.select("_id", "s").rows() == [("3-paid", None)]


def test_now_is_one_value_per_batch() -> None:
    m = mapping(fields={"id": "id", "seen": "now()", "day": "current_date"})
    frame, _ = run(m, batch([row(1), row(2)], ["c", "c"]))
    assert frame["seen"].n_unique() == 1 and frame["seen"].dtype == pl.Datetime("us", "UTC")


def test_meta_columns_are_readable() -> None:
    m = mapping(fields={"id": "id", "changed_at": "_ts", "op": "_op"})
    frame, _ = run(m, batch([row(1)], ["c"]))
    assert frame.select("op").rows() == [("c",)]


def test_numeric_text_columns_compute_as_numbers_and_rename_unchanged() -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("amount", pa.string(), metadata={"pg_type": "numeric"}),
        ]
    )
    m = MappingConfig(source="t", fields={"id": "id", "raw": "amount", "half": "amount / 2"})
    compiled = compile_mapping("shop", m, schema, ("id",))
    rows = pa.Table.from_pylist(
        [{"id": 1, "amount": "12.5"}, {"id": 2, "amount": "1" + "0" * 40}], schema=schema
    )
    result = compiled.apply(ChangeBatch.build("t", rows, ops=["c", "c"], positions=["1", "2"]))
    out = result.batch.data
    assert out.column("raw").to_pylist() == ["12.5"]
    assert out.column("half").to_pylist() == [Decimal("6.25")]
    assert out.schema.field("raw").metadata == {b"pg_type": b"numeric"}
    assert [d.reason.split(", ")[1] for d in result.dead_letters] == [
        "field half: numeric value out of range"
    ]


def test_empty_batch_maps_to_an_empty_batch_with_the_target_schema() -> None:
    m = mapping(fields={"id": "id", "n": "notes::int"}, filter="status = 'paid'")
    compiled = compile_mapping("shop", m, SCHEMA, ("id",))
    out = compiled.apply(batch([], [])).batch
    assert out.num_rows == 0 and out.rows.schema.equals(compiled.target_schema)


def test_integer_arithmetic_widens_instead_of_wrapping() -> None:
    schema = pa.schema([("id", pa.int32()), ("q", pa.int32())])
    m = MappingConfig(source="t", fields={"id": "id", "big": "q * 1000000"})
    rows = pa.Table.from_pylist([{"id": 1, "q": 5_000_000}], schema=schema)
    compiled = compile_mapping("shop", m, schema, ("id",))
    out = compiled.apply(ChangeBatch.build("t", rows, ops=["c"], positions=["1"])).batch
    assert out.data.column("big").to_pylist() == [5_000_000_000_000]


VALID = pa.schema(
    [
        pa.field("id", pa.int64(), metadata={"pg_type": "bigint"}),
        pa.field("valid_to", pa.timestamp("us", tz="UTC"), metadata={"pg_type": "timestamptz"}),
        pa.field("born", pa.date32(), metadata={"pg_type": "date"}),
    ]
)


@pytest.mark.parametrize(
    ("predicate", "ids"),
    [
        ("valid_to = 'infinity'", [1]),
        ("valid_to <> 'infinity'", [2, 3]),
        ("valid_to > '2020-01-01'", [1, 3]),
        ("valid_to < '-infinity'", []),
        ("valid_to > '-infinity'", [1, 3]),
        ("born = '4713-01-01 BC'", [2]),
        ("born < '0001-01-01'", [2, 3]),
        ("born = '-infinity'", [3]),
    ],
)
def test_filters_over_infinity_and_bc_behave_as_in_postgres(predicate, ids) -> None:
    """Postgres infinities are their type's extremes (syncengine.codecs.pg_temporal)."""
    stamps = pa.array([2**63 - 1, -(2**63), 1_700_000_000_000_000], pa.int64())
    days = pa.array([0, -2440550, -(2**31)], pa.int32())
    rows = pa.table(
        [pa.array([1, 2, 3], pa.int64()), stamps.cast(VALID.field(1).type), days.cast(pa.date32())],
        schema=VALID,
    )
    b = ChangeBatch.build("public.orders", rows, ops=["r"] * 3, positions=["1"] * 3, key=["id"])
    result = compile_mapping("shop", mapping(filter=predicate), VALID, ("id",)).apply(b)
    assert result.batch.data.column("id").to_pylist() == ids


def test_a_malformed_bc_date_is_refused_when_compiled() -> None:
    with pytest.raises(MappingError, match="invalid input syntax"):
        compile_mapping("shop", mapping(filter="born = '47x3-01-01 BC'"), VALID, ("id",))
