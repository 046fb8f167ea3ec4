"""Who applies a pipeline now (``syncengine.cli.applier``): the daemon's lock, or a cluster
stream's beat in the state store, fresh within two heartbeat timeouts."""

from __future__ import annotations

import time

import pytest

from syncengine.cli.applier import running_applier
from syncengine.config import parse_config
from syncengine.errors import UsageError
from syncengine.state.sqlite import SQLiteStateStore

PIPELINE = """
pipelines:
  p:
    source: {type: postgres, dsn: "postgresql://u@h/db", tables: [public.a]}
    target: {type: postgres, dsn: "postgresql://u@h/db2"}
"""
CLUSTER = "cluster: {engine: temporal, address: 'h:7233', heartbeat: 3s}\n"


def test_nothing_applies_without_a_daemon_or_a_beat(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.db")
    assert running_applier(parse_config(PIPELINE, env={}), store, "p") is None
    assert running_applier(parse_config(CLUSTER + PIPELINE, env={}), store, "p") is None


def test_a_daemon_holding_the_lock_applies(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.db")
    with store.lock("p", "run"):
        applier = running_applier(parse_config(PIPELINE, env={}), store, "p")
    assert applier is not None and applier.describe().startswith("the running daemon (pid ")


def test_a_fresh_beat_applies_only_with_a_shared_store(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.db")
    config = parse_config(CLUSTER + PIPELINE, env={})
    store.beat_applier("p", "w1 attempt 2", time.time() - 5)  # within 2 × 3 s
    with pytest.raises(UsageError, match="cannot read this machine's state file"):
        running_applier(config, store, "p")
    shared = config.model_copy(update={"state": "postgresql://u@h/state"})
    applier = running_applier(shared, store, "p")
    assert applier is not None and applier.describe() == "the cluster's stream (w1 attempt 2)"


def test_a_stale_or_ended_beat_does_not_apply(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.db")
    config = parse_config(CLUSTER + PIPELINE, env={})
    shared = config.model_copy(update={"state": "postgresql://u@h/state"})
    store.beat_applier("p", "w1", time.time() - 7)  # past 2 × 3 s
    assert running_applier(shared, store, "p") is None
    store.beat_applier("p", "w2", time.time())
    store.end_applier("p", "w1")  # an older attempt ending leaves the newer beat alone
    assert store.applier("p") is not None
    store.end_applier("p", "w2")
    assert store.applier("p") is None
    assert running_applier(shared, store, "p") is None
