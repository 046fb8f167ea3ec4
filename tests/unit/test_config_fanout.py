"""The ``fanout:`` section: validated with YAML paths, split into the reader's pipeline and one
pipeline per target, secrets kept out of messages, and the NATS client never loaded by a
config without it."""

from __future__ import annotations

import textwrap

from syncengine.config import parse_config
from syncengine.config.fanout import fanout_role
from syncengine.config.secrets import redact
from tests.unit.importprobe import modules_loaded
from tests.unit.test_config import ENV, GOOD, problems_of

FANOUT = """\
    fanout:
      engine: nats
      servers: [nats://n1:4222, "nats://app:natspw@n2:4222"]
      partitions: 4
      replicas: 3
      max_age: 2d
      targets:
        lake: {type: parquet, path: /data/lake}
        copy: {type: postgres, dsn: "postgresql://u:copypw@h/db"}
"""


def test_a_fanout_pipeline_splits_into_its_reader_and_one_pipeline_per_target():
    config = parse_config(GOOD + FANOUT, env=ENV)
    assert list(config.pipelines) == ["orders", "orders.target", "orders.lake", "orders.copy"]
    reader = config.pipelines["orders"]
    assert reader.fanout is not None
    assert (reader.fanout.partitions, reader.fanout.replicas) == (4, 3)
    assert reader.fanout.max_age == 2 * 86400
    assert reader.fanout.stream_name("orders") == "syncengine_orders"
    assert config.pipelines["orders.target"].target.type == "mongo"
    assert config.pipelines["orders.lake"].target.type == "parquet"
    assert config.pipelines["orders.copy"].target.type == "postgres"
    # every target's pipeline keeps the mappings and the conflict strategy
    assert config.pipelines["orders.lake"].mappings == reader.mappings
    assert [fanout_role(n) for n in config.pipelines] == [None, "target", "lake", "copy"]


def test_every_fanout_problem_with_its_path():
    bad = GOOD + textwrap.indent(
        textwrap.dedent(
            """\
            fanout:
              engine: kafka
              servers: ["http://x:1", "nats://h:99999"]
              partitions: 0
              stream: "a.b"
              duplicate_window: soon
              targets:
                target: {type: parquet, path: /x}
                Bad: {type: parquet, path: /y}
                lake: {type: parquet}
                pond: {type: parket, path: /z}
        """
        ),
        "    ",
    )
    assert problems_of(bad, ENV) == [
        "pipelines.orders.fanout.engine: Input should be 'nats'",
        "pipelines.orders.fanout.servers: 'http://x:1' is not a NATS server URL (nats://host:port)",
        "pipelines.orders.fanout.partitions: Input should be greater than or equal to 1",
        "pipelines.orders.fanout.stream: String should match pattern '^[A-Za-z0-9_-]{1,200}$'",
        "pipelines.orders.fanout.duplicate_window: 'soon' is not a duration; write e.g. 500ms, "
        "2s, 5m, 1h",
        "pipelines.orders.fanout.targets.Bad: target names may only use a-z, 0-9 and _",
        "pipelines.orders.fanout.targets.lake.path: required field is missing",
        "pipelines.orders.fanout.targets.pond.type: 'parket' is not a target type; did you mean "
        "'parquet'? known: postgres, mongo, parquet",
    ]


def test_the_main_target_name_is_reserved():
    bad = GOOD + FANOUT.replace("lake:", "target:")
    assert problems_of(bad, ENV) == [
        "pipelines.orders.fanout.targets: 'target' names the pipeline's own target: pick "
        "another name"
    ]


def test_a_two_way_pipeline_cannot_fan_out():
    two_way = textwrap.dedent(
        """\
        pipelines:
          sync:
            source: {type: postgres, dsn: "postgresql://a@h/one", tables: [public.t]}
            target: {type: postgres, dsn: "postgresql://a@h/two"}
            two_way: true
            fanout: {engine: nats, servers: ["nats://h:4222"]}
        """
    )
    problems = problems_of(two_way)
    assert (
        "pipelines.sync.fanout: a two-way pipeline cannot fan out (its directions read and "
        "write the same two databases)" in problems
    )


def test_passwords_in_server_urls_and_fanout_targets_are_secrets():
    parse_config(GOOD + FANOUT, env=ENV)
    assert "natspw" not in redact("connecting with natspw")
    assert "copypw" not in redact("postgres said copypw")


def test_a_config_without_fanout_never_imports_nats(tmp_path):
    """Loading a config and building its pipelines' stages loads neither the NATS client nor
    the fan-out package: the embedded mode needs no new dependency."""
    prefixes = ("nats", "syncengine.cluster.fanout")
    assert modules_loaded(tmp_path, GOOD, prefixes, ENV) == []
    # the probe sees them when a pipeline fans out
    assert "syncengine.cluster.fanout.publisher" in modules_loaded(
        tmp_path, GOOD + FANOUT, prefixes, ENV
    )
