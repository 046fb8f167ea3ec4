"""The table-name parser: SQL and raw forms, folding, the canonical text, "did you mean"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncengine.names import QualifiedName, canonical, closest, default_target, did_you_mean, quote


@pytest.mark.parametrize(
    ("text", "schema", "name"),
    [
        ("orders", "public", "orders"),
        ("public.orders", "public", "orders"),
        ("Public.Orders", "public", "orders"),  # unquoted: folded, as in SQL
        ('"My Schema"."T.with.dots"', "My Schema", "T.with.dots"),
        ('"My.Schema"."T.with.dots"', "My.Schema", "T.with.dots"),
        ('public."Order Items; x"', "public", "Order Items; x"),
        ('"Orders"', "public", "Orders"),
        ('s."a""b"', "s", 'a"b'),
        ("naïve.Été", "naïve", "Été"),  # only ASCII letters fold (UTF-8 databases)
        ("public.Order Items; x", "public", "Order Items; x"),  # raw: exact
        ('public.Ta"ble; DROP TABLE victim;-- é✓', "public", 'Ta"ble; DROP TABLE victim;-- é✓'),
        ("public.T.with.dots", "public", "T.with.dots"),  # raw: split at the first dot
        ("Order Items", "public", "Order Items"),
    ],
)
def test_parse(text: str, schema: str, name: str) -> None:
    assert QualifiedName.parse(text) == QualifiedName(schema, name)


@pytest.mark.parametrize("text", ["", ".orders", "public.", "."])
def test_parse_refuses_empty_parts(text: str) -> None:
    with pytest.raises(ValueError, match="not a table name"):
        QualifiedName.parse(text)


def test_default_schema() -> None:
    assert QualifiedName.parse("t", "analytics") == QualifiedName("analytics", "t")
    assert QualifiedName.parse("s.t", "analytics") == QualifiedName("s", "t")


def test_canonical_keeps_ordinary_names_and_quotes_the_rest() -> None:
    assert canonical("orders") == "public.orders"
    assert canonical("public.Order Items; x") == 'public."Order Items; x"'
    assert QualifiedName("My.Schema", "T.with.dots").sql == '"My.Schema"."T.with.dots"'
    assert QualifiedName("s", 'a"b').sql == 's."a""b"'
    assert QualifiedName("s", "Mixed").sql == 's."Mixed"'
    assert quote("with$dollar") == '"with$dollar"'


names = st.text(min_size=1, max_size=20).filter(lambda s: "\0" not in s)


@given(names, names)
def test_every_name_round_trips_through_its_sql_form(schema: str, name: str) -> None:
    table = QualifiedName(schema, name)
    assert QualifiedName.parse(table.sql) == table


def test_did_you_mean_finds_the_table_whatever_the_form() -> None:
    existing = [
        QualifiedName("My.Schema", "T.with.dots"),
        QualifiedName("public", "Order Items; x"),
        QualifiedName("public", "orders"),
    ]
    # raw form with a dotted schema: split at the first dot, so it does not exist as such
    assert closest("My.Schema.T.with.dots", existing)[0] == existing[0]
    assert closest("public.order items; x", existing)[0] == existing[1]
    assert closest("public.ordres", existing)[0] == existing[2]
    assert '\'"My.Schema"."T.with.dots"\'' in did_you_mean("My.Schema.T.with.dots", existing)
    assert did_you_mean("zzzz", existing) == ""


def test_default_target_is_quoted_for_postgres_targets_only() -> None:
    assert default_target('"My.Schema"."T.with.dots"', True, True) == '"T.with.dots"'
    assert default_target('"My.Schema"."T.with.dots"', True, False) == "T.with.dots"
    assert default_target("public.orders", True, True) == "orders"
    # Mongo collections are never folded: a Postgres target keeps their case
    assert default_target("userProfiles", False, True) == '"userProfiles"'
    assert default_target("userProfiles", False, False) == "userProfiles"


def pipeline(tables: list[str], target: dict, mappings: list[dict] | None = None):
    from syncengine.config.models import PipelineConfig

    source = {"type": "postgres", "dsn": "postgresql://x@h/db", "tables": tables}
    return PipelineConfig.model_validate(
        {"source": source, "target": target, "mappings": mappings or []}
    )


PG_TARGET = {"type": "postgres", "dsn": "postgresql://x@h/t"}


def test_config_matches_mappings_written_in_the_other_form() -> None:
    config = pipeline(
        ["public.Order Items; x", '"My.Schema"."T.with.dots"'],
        PG_TARGET,
        [{"source": 'public."Order Items; x"', "target": "analytics.items"}],
    )
    targets = {config.source_key(m.source): m.target for m in config.mappings_for_sources()}
    assert targets == {
        'public."Order Items; x"': "analytics.items",
        '"My.Schema"."T.with.dots"': '"T.with.dots"',
    }
    parquet = pipeline(['"My.Schema"."T.with.dots"'], {"type": "parquet", "path": "/tmp/x"})
    assert [m.target for m in parquet.mappings_for_sources()] == ["T.with.dots"]


def test_config_refuses_bad_and_duplicate_names() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a table name"):
        pipeline(["public."], PG_TARGET)
    with pytest.raises(ValidationError, match="name the same table"):
        pipeline(["orders", "public.Orders"], PG_TARGET)
    with pytest.raises(ValidationError, match="not one of the source's tables"):
        pipeline(["public.orders"], PG_TARGET, [{"source": 'public."Orders"'}])
