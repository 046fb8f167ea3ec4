"""Config validation: every problem at once, each with its YAML path; secrets never print."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from syncengine.config import parse_config
from syncengine.config.secrets import redact
from syncengine.errors import ConfigError
from syncengine.mongoclient import read_deadline
from syncengine.mongouri import majority_unless_set

GOOD = textwrap.dedent(
    """
    state: .syncengine/state.db
    pipelines:
      orders:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.orders]
          mode: cdc
        target:
          type: mongo
          uri: ${TGT_URI}
          database: shop
        mappings:
          - source: public.orders
            target: orders
            key: [id]
            fields:
              _id: id
              customer.email: lower(email)
              total: amount_cents / 100.0
            filter: status <> 'draft'
        conflicts:
          strategy: remote
          timestamp: updated_at
          tie: remote
        batch: {max_rows: 10000, max_wait: 500ms}
        backfill: {parallel: 3}
        on_error: dead_letter
    """
)
ENV = {"SRC_DSN": "postgresql://app:s3cret@db/shop", "TGT_URI": "mongodb://u:pw@m/"}


def test_design_example_parses():
    config = parse_config(GOOD, env=ENV)
    pipeline = config.pipelines["orders"]
    assert pipeline.batch.max_wait == 0.5
    assert pipeline.backfill.parallel == 3
    assert pipeline.mappings[0].target_name == "orders"
    assert "s3cret" not in repr(config) and "s3cret" not in str(pipeline.source)
    assert pipeline.source.dsn.get_secret_value() == ENV["SRC_DSN"]


def problems_of(text: str, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return info.value.problems


def test_three_mistakes_three_path_named_messages():
    bad = (
        GOOD.replace("strategy: remote", "strategy: lastwins")
        .replace("max_rows: 10000", "max_rows: -1")
        .replace("database: shop", "database: shop\n      colour: red")
    )
    problems = problems_of(bad, ENV)
    assert problems == [
        "pipelines.orders.target.colour: unknown key (check the spelling)",
        "pipelines.orders.conflicts.strategy: 'lastwins' is not a strategy; did you mean "
        "'local'? known: local, remote, merge, timestamp, manual",
        "pipelines.orders.batch.max_rows: Input should be greater than or equal to 1",
    ]


def test_backfill_parallel_is_checked_with_its_path_and_defaults_to_two():
    problems = problems_of(GOOD.replace("parallel: 3", "parallel: 0"), ENV)
    assert problems == [
        "pipelines.orders.backfill.parallel: Input should be greater than or equal to 1"
    ]
    problems = problems_of(GOOD.replace("parallel: 3", "parallel: 65"), ENV)
    assert problems == [
        "pipelines.orders.backfill.parallel: Input should be less than or equal to 64"
    ]
    config = parse_config(GOOD.replace("backfill: {parallel: 3}", "backfill: {}"), env=ENV)
    assert config.pipelines["orders"].backfill.parallel == 2


def test_unknown_source_type_suggests_the_closest():
    problems = problems_of(GOOD.replace("type: postgres", "type: postgress"), ENV)
    assert problems == [
        "pipelines.orders.source.type: 'postgress' is not a source type; did you mean "
        "'postgres'? known: postgres, mongo"
    ]


def test_missing_environment_variable_is_a_path_named_problem():
    problems = problems_of(GOOD, {"TGT_URI": "mongodb://x"})
    assert problems == ["pipelines.orders.source.dsn: environment variable SRC_DSN is not set"]


def test_incremental_needs_cursor_and_names_mapping_sources():
    text = GOOD.replace("mode: cdc", "mode: incremental").replace(
        "source: public.orders\n", "source: public.nope\n"
    )
    problems = problems_of(text, ENV)
    assert "pipelines.orders.source.cursor: required with mode: incremental" in problems[0]


def test_mapping_must_name_a_configured_table():
    problems = problems_of(GOOD.replace("- source: public.orders", "- source: public.nope"), ENV)
    assert problems[0].startswith("pipelines.orders.mappings[0].source: 'public.nope'")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "config is empty"),
        ("pipelines: [1, 2", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("pipelines: {}", "pipelines: Dictionary should have at least 1 item"),
        ("pipelines:\n  Bad-Name: {}\n", "pipelines.Bad-Name: pipeline names may only use"),
    ],
)
def test_shapes_that_are_not_configs(text, expected):
    assert any(expected in p for p in problems_of(text))


def test_redact_removes_passwords():
    assert redact("postgresql://app:s3cret@db/shop") == "postgresql://app:***@db/shop"
    assert redact("host=db password=s3cret user=x") == "host=db password=*** user=x"
    assert redact("mongodb://u:p%40ss@h:1/?tls=true") == "mongodb://u:***@h:1/?tls=true"


def test_cli_validate_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("strategy: remote", "strategy: lastwins")
        .replace("max_rows: 10000", "max_rows: 0")
        .replace("tie: remote", "tie: sideways")
    )
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "syncengine.cli", "validate", "--no-connect"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    result = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert [line.split(":")[0] for line in lines] == [
        "pipelines.orders.conflicts.strategy",
        "pipelines.orders.conflicts.tie",
        "pipelines.orders.batch.max_rows",
    ]
    assert "s3cret" not in result.stderr + result.stdout


def test_alias_bomb_is_refused_quickly():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join('*' + previous for _ in range(9))}]")
        previous = name
    lines.append("pipelines: *i")
    problems = problems_of("\n".join(lines))
    assert "expands to" in problems[0]


def test_deep_nesting_and_non_utf8_are_config_errors(tmp_path):
    from syncengine.config import load_config

    assert "nests too deeply" in problems_of("pipelines: " + "[" * 5000 + "]" * 5000)[0]
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe p\x00i\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_bad_expressions_are_reported_with_mapping_paths():
    bad = GOOD.replace("lower(email)", "frobnicate(email)").replace(
        "status <> 'draft'", "status <> "
    )
    problems = problems_of(bad, ENV)
    assert len(problems) == 2
    assert problems[0].startswith("pipelines.orders.mappings[0].fields.customer.email:")
    assert "frobnicate" in problems[0]
    assert problems[1].startswith("pipelines.orders.mappings[0].filter:")


def test_malformed_passwords_are_redacted_wherever_they_appear():
    text = GOOD.replace("${SRC_DSN}", "postgresql://app:Hunter2%ZZs3cret@db/shop")
    parse_config(text, env=ENV)
    leaked = 'invalid percent-encoded token: "Hunter2%ZZs3cret"'
    assert "Hunter2" not in redact(leaked)
    assert redact("pw is Hunter2%ZZs3cret!") == "pw is ***!"


def test_postgres_query_timeout_is_a_duration_with_a_default():
    assert parse_config(GOOD, env=ENV).pipelines["orders"].source.query_timeout == 60.0
    text = GOOD.replace("mode: cdc", "mode: cdc\n      query_timeout: 1500ms")
    assert parse_config(text, env=ENV).pipelines["orders"].source.query_timeout == 1.5
    problems = problems_of(GOOD.replace("mode: cdc", "mode: cdc\n      query_timeout: 0"), ENV)
    assert problems == ["pipelines.orders.source.query_timeout: Input should be greater than 0"]


MONGO_SOURCE = """
pipelines:
  docs:
    source: {type: mongo, uri: "mongodb://h/", database: app, collections: [acct]}
    target: {type: parquet, path: out}
"""


def test_mongo_query_timeout_becomes_the_clients_read_deadline():
    source = parse_config(MONGO_SOURCE, env={}).pipelines["docs"].source
    assert source.query_timeout == 60.0
    text = MONGO_SOURCE.replace("collections: [acct]", "collections: [acct], query_timeout: 5s")
    source = parse_config(text, env={}).pipelines["docs"].source
    assert source.query_timeout == 5.0
    assert read_deadline("mongodb://h/", source.query_timeout) == {"socketTimeoutMS": 5000}
    # a deadline in the URI wins: the user's socketTimeoutMS, or PyMongo's timeoutMS (CSOT)
    assert read_deadline("mongodb://h/?socketTimeoutMS=900", 5.0) == {}
    assert read_deadline("mongodb://h/?timeoutms=900", 5.0) == {}


def test_a_mongo_target_asking_for_unacknowledged_writes_is_refused_without_its_secret():
    env = {**ENV, "TGT_URI": "mongodb://u:pw@m/?replicaSet=rs&W=0"}
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD, env=env)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith("pipelines.orders.target.uri: w=0 asks for unacknowledged writes")
    assert "u:pw" not in problem and "replicaSet" not in problem
    for acknowledged in ("w=1", "w=majority", "wtimeoutMS=0"):
        parse_config(GOOD, env={**ENV, "TGT_URI": f"mongodb://u:pw@m/?{acknowledged}"})


def test_a_mongo_targets_writes_wait_for_a_majority_unless_the_uri_says():
    assert majority_unless_set("mongodb://h/?replicaSet=rs") == {"w": "majority"}
    assert majority_unless_set("mongodb://h/?W=1") == {}
    assert majority_unless_set("mongodb+srv://u:p@c.example.net/") == {"w": "majority"}
