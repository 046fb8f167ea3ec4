"""The ``cluster:`` section: validated like the rest of the config (every problem with its YAML
path), and loading it, or running any embedded command, never imports the Temporal SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from syncengine.config import parse_config
from tests.unit.importprobe import modules_loaded
from tests.unit.test_config import ENV, GOOD, problems_of


def test_cluster_section_defaults_and_durations():
    config = parse_config(GOOD + "cluster: {engine: temporal, heartbeat: 5s}\n", env=ENV)
    assert config.cluster is not None
    assert (config.cluster.address, config.cluster.namespace) == ("localhost:7233", "default")
    assert (config.cluster.task_queue, config.cluster.heartbeat) == ("syncengine", 5.0)
    assert parse_config(GOOD, env=ENV).cluster is None


def test_every_cluster_problem_with_its_path():
    bad = GOOD + textwrap.dedent(
        """
        cluster:
          engine: kafka
          address: temporal.internal:99999
          namespace: "-x"
          task_queue: ""
          heartbeat: 0s
          colour: red
        """
    )
    assert problems_of(bad, ENV) == [
        "cluster.engine: Input should be 'temporal'",
        "cluster.address: 'temporal.internal:99999' is not host:port (e.g. localhost:7233)",
        "cluster.namespace: '-x' is not a Temporal namespace (2-255 letters, digits, '.', '_', "
        "'-')",
        "cluster.task_queue: String should have at least 1 character",
        "cluster.heartbeat: Input should be greater than or equal to 1",
        "cluster.colour: unknown key (check the spelling)",
    ]


def test_engine_is_required():
    assert problems_of(GOOD + "cluster: {address: 'h:1'}\n", ENV) == [
        "cluster.engine: required field is missing"
    ]


def test_embedded_mode_never_imports_temporal(tmp_path):
    """A config with a cluster section, loaded and turned into a pipeline's stages, and the
    CLI's command table: none of it loads temporalio (the cluster extra stays optional)."""
    config = GOOD + "cluster: {engine: temporal}\n"
    assert modules_loaded(tmp_path, config, ("temporalio",), ENV) == []


def test_apply_refuses_two_way_pipelines_before_reaching_temporal(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            """
            cluster: {engine: temporal, address: "127.0.0.1:1"}
            pipelines:
              orders:
                two_way: true
                source: {type: postgres, dsn: "host=a", tables: [public.orders]}
                target: {type: postgres, dsn: "host=b"}
                conflicts: {prefer: source}
            """
        )
    )
    exe = str(Path(sys.executable).parent / "syncengine")
    result = subprocess.run([exe, "apply", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "two-way pipelines do not run in cluster mode yet: orders" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_local_lists_say_what_they_cannot_see(tmp_path):
    """Dead letters and manual conflicts stay in the state file of the worker that met them:
    in cluster mode ``deadletters list`` and ``conflicts list`` say (on stderr) that they read
    this machine's file only, so an empty answer is not taken for "none anywhere"; --json on
    stdout stays parseable. Without a cluster section they say nothing of it."""
    exe = str(Path(sys.executable).parent / "syncengine")
    body = textwrap.dedent(
        f"""
        state: {tmp_path / "state.db"}
        pipelines:
          orders:
            source: {{type: postgres, dsn: "host=a", tables: [public.orders]}}
            target: {{type: postgres, dsn: "host=b"}}
        """
    )
    for clustered in (True, False):
        path = tmp_path / f"c{clustered}.yaml"
        cluster = 'cluster: {engine: temporal, address: "127.0.0.1:1"}\n' if clustered else ""
        path.write_text(cluster + body)
        for command in (["deadletters", "list"], ["conflicts", "list"]):
            result = subprocess.run(
                [exe, *command, str(path), "--json"], capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "[]"
            noted = "this reads " + str(tmp_path / "state.db") + " on this machine only"
            assert (noted in result.stderr) is clustered, (command, result.stderr)
