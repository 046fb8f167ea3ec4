# ruff: noqa: E501  (expected messages read best on one line)
"""Error messages for bad expressions: YAML path, what is wrong, and where in the text."""

from __future__ import annotations

import pyarrow as pa
import pytest
from syncengine.mappings import MappingError, check_columns, check_config, compile_mapping
from syncengine.mappings.check import check_expression

from syncengine.config.models import Config


def config(mappings: list[dict]) -> Config:
    return Config.model_validate(
        {
            "pipelines": {
                "orders": {
                    "source": {"type": "postgres", "dsn": "postgresql://x", "tables": ["orders"]},
                    "target": {"type": "mongo", "uri": "mongodb://x", "database": "shop"},
                    "mappings": mappings,
                }
            }
        }
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frobnicate(a)", "unknown function 'frobnicate' at line 1, column 1"),
        ("1 + frobnicate(a)", "unknown function 'frobnicate' at line 1, column 5"),
        ("a +\n  sqrt(b)", "unsupported function 'sqrt' at line 2, column 3"),
        (
            "a +",
            "syntax error at line 1, column 3: incomplete expression (add is missing an operand)",
        ),
        ("a b c", "syntax error at line 1, column 5: Invalid expression / Unexpected token"),
        ("a as b", "syntax error at line 1, column 6: an alias is not allowed here"),
        ("select 1", "syntax error: expected an expression, got a SELECT statement"),
        ("a; b", "syntax error: expected exactly one expression"),
        ("s like upper(s)", "the pattern must be a string constant at line 1, column 8"),
        (
            "date_trunc('fortnight', ts)",
            "date_trunc: unsupported unit 'fortnight' at line 1, column 1",
        ),
        ("1 + date_trunc('x', ts)", "date_trunc: unsupported unit 'x' at line 1, column 5"),
        ("a = any(array[1])", "ANY/ALL is not supported; use IN (...) at line 1, column 1"),
        ("ts + interval '1 month'", "unsupported interval unit 'month' (months/years vary)"),
        # the parser takes a run of digits and dots for a number (a traceback before)
        (".0.", "'0.0.' is not a number"),
        ("a + .5.", "'0.5.' is not a number"),
    ],
)
def test_expression_errors(text: str, message: str) -> None:
    assert check_expression(text) == [message]


def test_check_config_reports_every_problem_with_its_path() -> None:
    cfg = config(
        [
            {"source": "orders", "fields": {"total": "1 + frobnicate(x)", "ok": "lower(a)"}},
            {
                "source": "orders",
                "target": "drafts",
                "filter": "status <> 'draft' and (",
                "fields": {"customer": "a", "customer.email": "b"},
            },
            {"source": "orders", "target": "x", "dialect": "klingon", "filter": "a"},
            {"source": "orders", "target": "y", "filter": "_op = 'c'"},
        ]
    )
    assert check_config(cfg) == [
        "pipelines.orders.mappings[0].fields.total: unknown function 'frobnicate' at line 1, "
        "column 5",
        "pipelines.orders.mappings[1].fields.customer.email: 'customer' is also a plain field; "
        "it cannot nest",
        "pipelines.orders.mappings[1].filter: syntax error at line 1, column 23: incomplete "
        "expression (paren is missing an operand)",
        "pipelines.orders.mappings[2].dialect: unknown SQL dialect 'klingon': "
        + check_config(cfg)[3].split(": ", 2)[2],
        "pipelines.orders.mappings[3].filter: the filter reads change metadata (_op); it must "
        "read row fields",
    ]


def test_a_good_config_has_no_problems() -> None:
    cfg = config([{"source": "orders", "fields": {"_id": "id"}, "filter": "total >= 1000"}])
    assert check_config(cfg) == []


SCHEMA = pa.schema(
    [("id", pa.int64()), ("email", pa.string()), ("doc", pa.struct([("a", pa.int32())]))]
)


def test_check_columns_names_unknown_columns_and_type_errors() -> None:
    cfg = config(
        [
            {
                "source": "orders",
                "fields": {"e": "lower(emial)", "d": "doc.b", "bad": "email + 1", "ok": "doc.a"},
                "filter": "id + 1",
            }
        ]
    )
    problems = check_columns("orders", 0, cfg.pipelines["orders"].mappings[0], SCHEMA, ("id",))
    assert problems[:2] == [
        "pipelines.orders.mappings[0].fields.e: unknown column 'emial' at line 1, column 7",
        "pipelines.orders.mappings[0].fields.d: unknown column 'doc.b' at line 1, column 1",
    ]
    assert problems[2].startswith(
        "pipelines.orders.mappings[0].fields.bad: cannot compute 'email + 1' at line 1, column 1: "
    )
    assert problems[3] == (
        "pipelines.orders.mappings[0].filter: the filter must be a condition, not Int64"
    )
    assert len(problems) == 4


def test_compile_mapping_raises_all_problems() -> None:
    cfg = config([{"source": "orders", "fields": {"e": "nope", "f": "nope2"}}])
    with pytest.raises(MappingError) as info:
        compile_mapping("orders", cfg.pipelines["orders"].mappings[0], SCHEMA, ("id",))
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "unknown column 'nope' at line 1, column 1",
        "unknown column 'nope2' at line 1, column 1",
    ]
    assert info.value.exit_code == 2


def test_documents_read_missing_fields_as_null() -> None:
    cfg = config([{"source": "orders", "fields": {"_id": "_id", "e": "lower(email)"}}])
    schema = pa.schema([("_id", pa.string())])
    compiled = compile_mapping("orders", cfg.pipelines["orders"].mappings[0], schema, ("_id",))
    assert compiled.missing == "null"


def test_invalid_regex_is_a_config_error() -> None:
    assert check_expression("s ~ '(unclosed'") == [
        "invalid regular expression at line 1, column 1: unclosed group"
    ]
