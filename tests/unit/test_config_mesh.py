"""``meshes:``: every refusal with its YAML path, and the directions a mesh becomes (names,
origins it applies under, echoes, ignored origins, who copies the first rows)."""

from __future__ import annotations

import textwrap

import pytest

from syncengine.config import parse_config
from syncengine.config.twoway import (
    direction_of,
    directions_of,
    origin_name,
    sibling_name,
    versions_name,
)
from syncengine.errors import ConfigError

BASE = """
meshes:
  orders:
    nodes:
      a: {dsn: "host=h dbname=a"}
      b: {dsn: "host=h dbname=b"}
      c: {dsn: "host=h dbname=c"}
    tables: [public.orders]
"""


def problems(extra: str, base: str = BASE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(base + textwrap.indent(textwrap.dedent(extra), "    "))
    return list(info.value.problems)


def test_one_direction_per_ordered_pair_each_under_its_own_origin():
    config = parse_config(BASE + "    conflicts: {strategy: timestamp}\n")
    names = directions_of(config, "orders")
    assert names == [
        "orders.a>b",
        "orders.a>c",
        "orders.b>a",
        "orders.b>c",
        "orders.c>a",
        "orders.c>b",
    ]
    ab = config.pipelines["orders.a>b"]
    assert ab.source.slot == ab.source.publication == "syncengine_orders__a__b"
    assert ab.target.replication_origin == origin_name("orders.a>b") == "syncengine_orders__a__b"
    # b>a's writes into a are this direction's echoes; c>a's are skipped (c sends them to b)
    assert ab.source.own_origins == ["syncengine_orders__b__a"]
    assert ab.source.ignore_origins == ["syncengine_orders__c__a"]
    # c>b writes into b too: rows it wrote are the engine's, judged by their recorded version
    assert ab.target.peer_origins == ["syncengine_orders__c__b"]
    assert ab.mappings[0].target == "public.orders"
    assert sibling_name("orders.a>b") == "orders.b>a"
    assert versions_name("orders.a>b") == versions_name("orders.c>b") == "orders@b"
    assert direction_of(config, "orders.c>a") == "c->a"


def test_the_first_node_seeds_and_wins_ties():
    config = parse_config(BASE + "    conflicts: {strategy: timestamp}\n")
    copies = {n for n, p in config.pipelines.items() if p.backfill.copy_rows}
    assert copies == {"orders.a>b", "orders.a>c"}
    ties = {n: p.conflicts.tie for n, p in config.pipelines.items()}
    # remote is the direction's source: the node listed earlier wins a tie on every link
    assert ties == {
        "orders.a>b": "remote",
        "orders.a>c": "remote",
        "orders.b>c": "remote",
        "orders.b>a": "local",
        "orders.c>a": "local",
        "orders.c>b": "local",
    }
    assert {p.conflicts.strategy for p in config.pipelines.values()} == {"timestamp"}


@pytest.mark.parametrize(
    "conflicts, expected",
    [
        ("{}", "meshes.orders.conflicts.strategy: a mesh needs a converging strategy"),
        ("{strategy: remote}", "meshes.orders.conflicts.strategy: 'remote' does not converge"),
        ("{strategy: merge}", "meshes.orders.conflicts.strategy: 'merge' does not converge"),
        ("{prefer: source}", "meshes.orders.conflicts.prefer: not for a mesh"),
        ("{strategy: timestamp, tie: source}", "meshes.orders.conflicts.tie: a mesh breaks ties"),
        (
            "{strategy: timestamp, timestamp: updated_at}",
            "meshes.orders.conflicts.timestamp: a mesh compares commit times",
        ),
    ],
)
def test_strategies_that_do_not_converge_in_a_mesh_are_refused(conflicts, expected):
    found = problems(f"conflicts: {conflicts}\n")
    assert any(p.startswith(expected) for p in found), found


def test_bad_node_names_are_refused_with_their_paths():
    text = BASE.replace("      b:", "      B__x:")
    found = problems("conflicts: {strategy: timestamp}\n", text)
    assert (
        "meshes.orders.nodes.B__x: node names are words of a-z and 0-9 joined by single _ (no __)"
        in found
    ), found


def test_two_nodes_on_one_database_are_refused():
    found = problems("conflicts: {strategy: timestamp}\n", BASE.replace("dbname=c", "dbname=a"))
    assert any(
        p.startswith("meshes.orders.nodes.c.dsn: the same database as node a") for p in found
    ), found


def test_names_taken_by_pipelines_are_refused():
    text = BASE + (
        "    conflicts: {strategy: timestamp}\n"
        "pipelines:\n"
        "  orders__a__b:\n"
        '    source: {type: postgres, dsn: "host=x", tables: [public.t]}\n'
        '    target: {type: postgres, dsn: "host=y"}\n'
        "  orders:\n"
        '    source: {type: postgres, dsn: "host=x", tables: [public.t]}\n'
        '    target: {type: postgres, dsn: "host=y"}\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    found = list(info.value.problems)
    assert any(p.startswith("meshes.orders: a pipeline has this name") for p in found), found
    assert any(p.startswith("meshes.orders.nodes.a: its direction to b needs") for p in found), (
        found
    )


def test_copy_rows_is_not_for_the_config():
    found = problems("conflicts: {strategy: timestamp}\nbackfill: {copy_rows: false}\n")
    assert any(p.startswith("meshes.orders.backfill.copy_rows:") for p in found), found


def test_a_config_needs_a_pipeline_or_a_mesh():
    with pytest.raises(ConfigError) as info:
        parse_config("state: x.db\n")
    assert any(
        "pipelines: Dictionary should have at least 1 item" in p for p in info.value.problems
    )


def test_a_node_password_is_a_secret():
    from syncengine.config.secrets import redact

    parse_config(
        BASE.replace("dbname=a", "dbname=a password=hunter2")
        + "    conflicts: {strategy: timestamp}\n"
    )
    assert "hunter2" not in redact("could not connect: password=hunter2")


def test_two_way_pipelines_sharing_a_database_are_refused():
    """A chain a<->b<->c of two pipelines forwards every change; a mesh says it at once."""
    pair = (
        "  {name}:\n"
        "    two_way: true\n"
        '    source: {{type: postgres, dsn: "{src}", tables: [public.orders]}}\n'
        '    target: {{type: postgres, dsn: "{tgt}"}}\n'
        "    conflicts: {{strategy: timestamp}}\n"
    )
    text = "pipelines:\n" + pair.format(name="ab", src="host=a", tgt="host=b")
    text += pair.format(name="bc", src="host=b", tgt="host=c")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    found = list(info.value.problems)
    assert any(
        p.startswith("pipelines.bc: table public.orders of this database is also written back by")
        for p in found
    ), found
