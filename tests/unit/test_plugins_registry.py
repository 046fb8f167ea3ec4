"""Source and target kinds come from the registry: the built-ins are declared as entry points
like any plugin, each factory fulfils the contract, and the config union follows what is
registered (so a kind registered in-process is validated like a built-in, with its paths)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

import pytest
from pydantic import BaseModel, SecretStr

from syncengine.config import parse_config
from syncengine.config.base import SourceConfigBase, TargetConfigBase
from syncengine.config.secrets import redact
from syncengine.errors import ConfigError
from syncengine.plugins import SOURCES, STRATEGIES, TARGETS, source_factory, target_factory
from syncengine.sources.factory import SourceFactory
from syncengine.targets.factory import TargetFactory

REPO = Path(__file__).resolve().parents[2]
SOURCE = "source: {type: postgres, dsn: 'postgresql://h/db', tables: [t]}"


def problems(target: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"pipelines: {{p: {{{SOURCE}, target: {target}}}}}")
    return raised.value.problems


def test_builtins_are_the_entry_points_declared_in_pyproject() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    for registry in (STRATEGIES, SOURCES, TARGETS):
        assert declared[registry.group] == registry._builtins, registry.group


@pytest.mark.parametrize(
    ("lookup", "protocol", "names"),
    [
        (source_factory, SourceFactory, ["postgres", "mongo"]),
        (target_factory, TargetFactory, ["postgres", "mongo", "parquet"]),
    ],
)
def test_each_builtin_factory_fulfils_the_contract(lookup, protocol, names) -> None:
    for name in names:
        factory = lookup(name)
        assert isinstance(factory, protocol)
        assert factory.name == name
        assert get_args(factory.config.model_fields["type"].annotation) == (name,)


def test_factory_modules_load_no_driver() -> None:
    """Every config load imports every kind's factory: they must stay light."""
    probe = (
        "import json, sys\n"
        "from syncengine.plugins import SOURCES, TARGETS, source_factory, target_factory\n"
        "[source_factory(n) for n in SOURCES.names()]\n"
        "[target_factory(n) for n in TARGETS.names()]\n"
        "heavy = ('polars', 'pyarrow', 'psycopg', 'pymongo', 'sqlglot')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


class MemoConfig(TargetConfigBase):
    type: Literal["memo"]
    size: int
    token: SecretStr | None = None


class MemoFactory:
    name = "memo"
    config = MemoConfig
    change_log = False

    def create(self, pipeline, config, state):  # noqa: ANN001, ANN201 - never built here
        raise AssertionError("not built in these tests")

    async def preflight(self, pipeline, config):  # noqa: ANN001, ANN201
        return []


@pytest.fixture
def memo() -> Iterator[None]:
    TARGETS.register("memo", MemoFactory())
    yield
    TARGETS.unregister("memo")


def test_a_kind_registered_in_process_joins_the_union(memo: None) -> None:
    config = parse_config(f"pipelines: {{p: {{{SOURCE}, target: {{type: memo, size: 3}}}}}}")
    assert config.pipelines["p"].target == MemoConfig(type="memo", size=3)
    assert problems("{type: memo, size: x, colour: red}") == [
        "pipelines.p.target.size: Input should be a valid integer, unable to parse string as an "
        "integer",
        "pipelines.p.target.colour: unknown key (check the spelling)",
    ]
    assert problems("{type: mem}") == [
        "pipelines.p.target.type: 'mem' is not a target type; did you mean 'memo'? known: "
        "postgres, mongo, parquet, memo"
    ]


def test_a_plugin_kinds_secret_fields_are_never_printed(memo: None) -> None:
    """Registered before validation, like a DSN's password: an error message or log line that
    quotes the value shows ``***``."""
    assert problems("{type: memo, size: x, token: tok-1234-secret}")
    assert redact("auth failed for tok-1234-secret") == "auth failed for ***"
    assert redact("postgresql://app@h/db") == "postgresql://app@h/db"  # a DSN is not one


def test_an_unregistered_kind_leaves_the_union(memo: None) -> None:
    TARGETS.unregister("memo")
    assert problems("{type: memo, size: 3}") == [
        "pipelines.p.target.type: 'memo' is not a target type; did you mean 'mongo'? known: "
        "postgres, mongo, parquet"
    ]


def test_a_broken_registration_fails_only_the_configs_that_use_it() -> None:
    TARGETS.register("broken", object())
    try:
        assert problems("{type: broken}") == [
            "pipelines.p.target.type: target type 'broken' is registered with "
            f"{object.__repr__(TARGETS.get('broken'))}, which is not a TargetFactory (name, "
            "config, create, preflight; docs/extending.md)"
        ]
        parse_config(f"pipelines: {{p: {{{SOURCE}, target: {{type: parquet, path: x}}}}}}")
    finally:
        TARGETS.unregister("broken")


def test_a_factory_must_answer_to_its_registered_name() -> None:
    TARGETS.register("other", MemoFactory())
    try:
        assert problems("{type: other}") == [
            "pipelines.p.target.type: target type 'other' is registered with a factory named "
            "'memo'; the entry point's name and the factory's must agree"
        ]
    finally:
        TARGETS.unregister("other")


def test_generic_code_asks_the_builtin_configs_what_it_used_to_infer_from_their_class() -> None:
    """What the pipeline model, the resolver and the daemon ask of a source/target config,
    answered by the built-ins as the isinstance checks it replaces did."""
    config = parse_config(
        "pipelines:\n"
        "  pg: {source: {type: postgres, dsn: x, tables: ['public.\"T.x\"', Orders]},\n"
        "       target: {type: postgres, dsn: x}}\n"
        "  poll: {source: {type: postgres, dsn: x, tables: [t], mode: incremental, cursor: c},\n"
        "         target: {type: mongo, uri: x, database: d}}\n"
        "  docs: {source: {type: mongo, uri: x, database: d, collections: [a.b]},\n"
        "         target: {type: parquet, path: x}}\n"
        "  keep: {source: {type: mongo, uri: x, database: d, collections: [c],\n"
        "         on_history_lost: fail}, target: {type: parquet, path: x}}\n"
    )
    pg, poll, docs, keep = (config.pipelines[n] for n in ("pg", "poll", "docs", "keep"))
    assert [m.target for m in pg.mappings_for_sources()] == ['"T.x"', "orders"]
    assert pg.source_key("Orders") == "public.orders" and docs.source_key("a.b") == "a.b"
    assert [m.target for m in docs.mappings_for_sources()] == ["b"]
    assert [pg.source.positions_sort(), poll.source.positions_sort()] == [True, False]
    assert docs.source.positions_sort()
    assert [p.source.resnapshot_on_history_lost() for p in (pg, docs, keep)] == [
        False,
        True,
        False,
    ]


class PlainConfig(BaseModel):
    type: Literal["plain"]


class Shelf(SourceConfigBase):
    type: Literal["shelf"]


def test_a_kinds_config_must_derive_from_the_base_and_implement_what_it_requires() -> None:
    plain = type("PlainFactory", (MemoFactory,), {"name": "plain", "config": PlainConfig})()
    TARGETS.register("plain", plain)
    try:
        assert problems("{type: plain}") == [
            "pipelines.p.target.type: target type 'plain': its config model "
            f"{PlainConfig!r} does not derive from syncengine.config.base.TargetConfigBase"
        ]
    finally:
        TARGETS.unregister("plain")
    shelf = type("ShelfFactory", (MemoFactory,), {"name": "shelf", "config": Shelf})()
    shelf.notes = shelf.preflight
    SOURCES.register("shelf", shelf)
    try:
        with pytest.raises(ConfigError) as raised:
            parse_config(
                "pipelines: {p: {source: {type: shelf}, target: {type: parquet, path: x}}}"
            )
        assert raised.value.problems == [
            "pipelines.p.source.type: source type 'shelf': its config model Shelf does not "
            "implement table_names"
        ]
    finally:
        SOURCES.unregister("shelf")
