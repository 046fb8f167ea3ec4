"""``two_way: true``: every refusal with its YAML path, and the two directions it becomes."""

from __future__ import annotations

import textwrap

import pytest

from syncengine.config import parse_config
from syncengine.errors import ConfigError

BASE = """
pipelines:
  orders:
    two_way: true
    source: {type: postgres, dsn: "host=a", tables: [public.orders]}
    target: {type: postgres, dsn: "host=b"}
"""


def problems(extra: str, base: str = BASE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(base + textwrap.indent(textwrap.dedent(extra), "    "))
    return list(info.value.problems)


MONGO = BASE.replace(
    '{type: postgres, dsn: "host=b"}', "{type: mongo, uri: mongodb://h, database: shop}"
)


MONGO_SOURCE = "{type: mongo, uri: mongodb://a, database: app, collections: [orders]}"
#: a Mongo source side into Postgres, and a Mongo database on both sides
FROM_MONGO = BASE.replace('{type: postgres, dsn: "host=a", tables: [public.orders]}', MONGO_SOURCE)
MONGO_BOTH = MONGO.replace('{type: postgres, dsn: "host=a", tables: [public.orders]}', MONGO_SOURCE)


def test_mongo_source_side_reads_updates_as_made_and_copies_the_id():
    found = problems("conflicts: {prefer: source}\n", FROM_MONGO)
    assert any(
        p.startswith("pipelines.orders.source.collections:") and "orders has no mapping" in p
        for p in found
    ), found
    text = FROM_MONGO.replace("collections: [orders]}", "collections: [orders], "
                              "full_document: updateLookup, before_images: false}")  # fmt: skip
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: orders
            flatten: true
          - source: orders
            target: other
            fields: {id: "_id || 'x'", name: name}
        """,
        text,
    )
    for path in (
        "source.full_document:",
        "source.before_images:",
        "mappings[0].flatten:",
        "mappings[0].fields:",
        "mappings[1].fields:",
    ):
        assert any(p.startswith("pipelines.orders." + path) for p in found), (path, found)


def test_mongo_to_mongo_copies_the_id_or_whole_documents():
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: orders
            fields: {_id: ref, name: name}
        """,
        MONGO_BOTH,
    )
    assert any(p.startswith("pipelines.orders.mappings[0].fields._id:") for p in found), found
    parse_config(MONGO_BOTH + "    conflicts: {prefer: source}\n")  # whole documents


def test_manual_between_mongo_databases_copies_whole_documents():
    config = parse_config(MONGO_BOTH + "    conflicts: {strategy: manual}\n")
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    # each direction finds the other's parked conflicts under its own name of the collection
    assert [m.twin_table for m in forward.mappings] == ["orders"]
    assert [m.twin_table for m in reverse.mappings] == ["orders"]
    found = problems(  # a renamed _id
        "conflicts: {strategy: manual}\nmappings: [{source: orders, fields: {id: _id}}]\n",
        FROM_MONGO,
    )
    assert any("same columns" in p for p in found), found


def test_mongo_source_directions():
    config = parse_config(
        FROM_MONGO
        + "    conflicts: {strategy: timestamp}\n"
        + "    mappings: [{source: orders, target: sales, fields: {id: _id, "
        + "email: customer.email}}]\n"
    )
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert forward.source.type == "mongo"
    assert (forward.source.full_document, forward.source.before_images) == ("default", True)
    assert forward.source.own_origins == [
        "syncengine_orders_reverse",
        "syncengine_orders_reverse.manual",
    ]
    assert forward.target.replication_origin == "syncengine_orders"
    assert reverse.source.type == "postgres" and reverse.source.dsn.get_secret_value() == "host=b"
    assert reverse.source.tables == ["public.sales"]
    assert reverse.target.type == "mongo" and reverse.target.database == "app"
    assert reverse.target.origin == "syncengine_orders_reverse"
    (mapping,) = reverse.mappings
    assert (mapping.source, mapping.target) == ("public.sales", "orders")
    assert mapping.fields == {"_id": '"id"', "customer.email": '"email"'}


def test_mongo_to_mongo_directions():
    config = parse_config(MONGO_BOTH + "    conflicts: {prefer: target}\n")
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert (forward.source.database, forward.target.database) == ("app", "shop")
    assert forward.target.origin == "syncengine_orders"
    assert reverse.source.type == "mongo" and reverse.source.database == "shop"
    assert reverse.source.own_origins == ["syncengine_orders", "syncengine_orders.manual"]
    assert (reverse.source.full_document, reverse.source.before_images) == ("default", True)
    assert reverse.target.type == "mongo" and reverse.target.database == "app"
    assert reverse.target.origin == "syncengine_orders_reverse"
    (mapping,) = reverse.mappings
    assert (mapping.source, mapping.target, mapping.fields) == ("orders", "orders", None)


def test_mongo_target_mapping_must_name_the_id_as_a_column():
    found = problems("conflicts: {prefer: source}\n", MONGO)
    assert any(p.startswith("pipelines.orders.source.tables:") for p in found), found
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: public.orders
            exclude: [secret]
          - source: public.orders
            target: other
            fields: {_id: "id * 2", name: name}
        """,
        MONGO,
    )
    assert any(p.startswith("pipelines.orders.mappings[0].fields:") for p in found), found
    assert any(p.startswith("pipelines.orders.mappings[1].fields._id:") for p in found), found


def test_mongo_target_directions():
    config = parse_config(
        MONGO
        + textwrap.indent(
            textwrap.dedent(
                """
                conflicts: {strategy: timestamp}
                mappings:
                  - source: public.orders
                    target: sales
                    fields: {_id: id, name: name, customer.email: email}
                """
            ),
            "    ",
        )
    )
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert forward.target.type == "mongo" and forward.target.origin == "syncengine_orders"
    assert forward.source.own_origins == [
        "syncengine_orders_reverse",
        "syncengine_orders_reverse.manual",
    ]
    assert reverse.source.type == "mongo"
    assert (reverse.source.database, reverse.source.collections) == ("shop", ["sales"])
    assert reverse.source.own_origins == ["syncengine_orders", "syncengine_orders.manual"]
    assert reverse.target.type == "postgres"
    assert reverse.target.replication_origin == "syncengine_orders_reverse"
    (mapping,) = reverse.mappings
    assert (mapping.source, mapping.target) == ("sales", "public.orders")
    assert mapping.fields == {"id": '"_id"', "name": '"name"', "email": '"customer"."email"'}


def test_parquet_side_cannot_be_read_back():
    text = BASE.replace('{type: postgres, dsn: "host=b"}', "{type: parquet, path: /tmp/x}")
    found = problems("conflicts: {prefer: source}\n", text)
    assert any(
        p.startswith("pipelines.orders.target.type:") and "cannot be read back" in p for p in found
    )


def test_incremental_source_is_refused():
    text = BASE.replace(
        "tables: [public.orders]}", "tables: [public.orders], mode: incremental, cursor: ts}"
    )
    found = problems("conflicts: {prefer: source}\n", text)
    assert any(p.startswith("pipelines.orders.source.mode:") for p in found)


@pytest.mark.parametrize(
    ("strategy", "why"),
    [
        ("local", "never converges"),
        ("remote", "swaps instead of converging"),
    ],
)
def test_strategies_that_do_not_converge_are_refused(strategy, why):
    found = problems(f"conflicts: {{strategy: {strategy}}}\n")
    assert any(p.startswith("pipelines.orders.conflicts.strategy:") and why in p for p in found), (
        found
    )


def test_a_strategy_must_be_chosen():
    found = problems("batch: {max_rows: 10}\n")
    assert any("needs a converging strategy" in p for p in found)


def test_tie_must_name_a_side_and_prefer_excludes_strategy():
    found = problems("conflicts: {strategy: timestamp, tie: remote}\n")
    assert any(p.startswith("pipelines.orders.conflicts.tie:") for p in found)
    found = problems("conflicts: {strategy: timestamp, prefer: target}\n")
    assert any(p.startswith("pipelines.orders.conflicts.prefer:") for p in found)


def test_per_mapping_override_is_checked_too():
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: public.orders
            conflicts: {strategy: local}
        """
    )
    assert any(p.startswith("pipelines.orders.mappings[0].conflicts.strategy:") for p in found)


def test_computed_field_and_filter_need_a_reverse():
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: public.orders
            fields: {id: id, total: amount_cents / 100.0}
            filter: status <> 'draft'
        """
    )
    assert any(p.startswith("pipelines.orders.mappings[0].fields.total:") for p in found), found
    assert any(p.startswith("pipelines.orders.mappings[0].filter:") for p in found), found


def test_prefer_and_reverse_are_two_way_only():
    one_way = BASE.replace("    two_way: true\n", "")
    found = problems(
        """
        conflicts: {prefer: source}
        mappings:
          - source: public.orders
            reverse: {filter: "true"}
        """,
        one_way,
    )
    assert any(p.startswith("pipelines.orders.conflicts.prefer:") for p in found)
    assert any(p.startswith("pipelines.orders.mappings[0].reverse:") for p in found)


def test_name_of_the_reverse_direction_is_reserved():
    text = (
        BASE
        + "    conflicts: {prefer: source}\n"
        + "  orders_reverse:\n"
        + '    source: {type: postgres, dsn: "host=a", tables: [public.x]}\n'
        + '    target: {type: postgres, dsn: "host=b"}\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(p.startswith("pipelines.orders_reverse:") for p in info.value.problems)


def test_directions_renames_inverted_and_strategy_by_side():
    config = parse_config(
        BASE
        + textwrap.indent(
            textwrap.dedent(
                """
                conflicts: {strategy: timestamp, tie: target}
                mappings:
                  - source: public.orders
                    target: sales.orders_copy
                    fields: {id: id, Amount: amt, total: amt * 2}
                    reverse: {fields: {note: "'from target'"}}
                """
            ),
            "    ",
        )
    )
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert forward.target.replication_origin == "syncengine_orders"
    # both readers also take a manual resolution's writes as echoes
    assert forward.source.own_origins == [
        "syncengine_orders_reverse", "syncengine_orders_reverse.manual"
    ]  # fmt: skip
    assert reverse.target.replication_origin == "syncengine_orders_reverse"
    assert reverse.source.own_origins == ["syncengine_orders", "syncengine_orders.manual"]
    assert reverse.source.slot == reverse.source.publication == "syncengine_orders_reverse"
    assert reverse.source.tables == ["sales.orders_copy"]
    (mapping,) = reverse.mappings
    assert mapping.target == "public.orders"
    assert mapping.fields == {"id": '"id"', "amt": '"Amount"', "note": "'from target'"}
    # tie: target is the local side forward and the remote side in reverse
    assert (forward.conflicts.tie, reverse.conflicts.tie) == ("local", "remote")


def test_prefer_becomes_remote_and_local_with_audit():
    config = parse_config(BASE + "    conflicts: {prefer: source}\n")
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert (forward.conflicts.strategy, reverse.conflicts.strategy) == ("remote", "local")
    assert forward.conflicts.audit and reverse.conflicts.audit


def test_a_renamed_timestamp_field_is_read_under_its_source_name_in_reverse():
    config = parse_config(
        BASE
        + textwrap.indent(
            textwrap.dedent(
                """
                conflicts: {strategy: timestamp, timestamp: changed}
                mappings:
                  - source: public.orders
                    fields: {id: id, changed: updated_at}
                """
            ),
            "    ",
        )
    )
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert forward.conflicts.timestamp == "changed"
    (mapping,) = reverse.mappings
    assert mapping.conflicts is not None and mapping.conflicts.timestamp == "updated_at"
    assert mapping.conflicts.tie == "local"  # tie: source is the local side in reverse


@pytest.mark.parametrize("strategy", ["merge", "manual"])
def test_merge_and_manual_converge_and_keep_their_strategy_by_side(strategy):
    config = parse_config(BASE + f"    conflicts: {{strategy: {strategy}, tie: target}}\n")
    forward, reverse = config.pipelines["orders"], config.pipelines["orders.reverse"]
    assert (forward.conflicts.strategy, reverse.conflicts.strategy) == (strategy, strategy)
    assert (forward.conflicts.tie, reverse.conflicts.tie) == ("local", "remote")
    # the reverse direction knows the forward one's name of the table (two-way manual)
    (mapping,) = reverse.mappings
    assert mapping.twin_table == "orders"


def test_merge_compares_commit_times_not_a_field():
    found = problems("conflicts: {strategy: merge, timestamp: changed}\n")
    assert any(p.startswith("pipelines.orders.conflicts.timestamp:") for p in found), found


def test_manual_needs_the_same_columns_on_both_sides():
    found = problems(
        """
        conflicts: {strategy: manual}
        mappings:
          - source: public.orders
            fields: {id: id, total: amount}
            exclude: [notes]
        """
    )
    assert any(p.startswith("pipelines.orders.mappings[0].fields.total:") for p in found), found
    assert any(p.startswith("pipelines.orders.mappings[0].exclude:") for p in found), found
    found = problems(
        "conflicts: {prefer: source}\nmappings: [{source: public.orders, twin_table: x}]\n"
    )
    assert any(p.startswith("pipelines.orders.mappings[0].twin_table:") for p in found), found
