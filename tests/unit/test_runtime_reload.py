"""What a reload touches (:func:`syncengine.runtime.reload.plan_reload`), and the live snapshot
rows' conversion to fenced updates."""

from __future__ import annotations

import pyarrow as pa

from syncengine.changes import OP_DELETE, OP_READ, OP_UPDATE, ChangeBatch
from syncengine.config.loader import load_config
from syncengine.config.models import MappingConfig
from syncengine.runtime.reload import adds_only, plan_reload
from syncengine.runtime.tableops import as_updates

CONFIG = """
state: {state}
pipelines:
  one:
    source: {{type: postgres, dsn: "postgresql://x@localhost/db", tables: [{tables}]}}
    target: {{type: parquet, path: {path}}}
  two:
    source: {{type: mongo, uri: "mongodb://localhost", database: shop, collections: [{colls}]}}
    target: {{type: parquet, path: {path}}}
"""


def _config(tmp_path, tables="public.a", colls="x", name="c.yaml"):
    path = tmp_path / name
    path.write_text(
        CONFIG.format(state=tmp_path / "s.db", path=tmp_path / "out", tables=tables, colls=colls)
    )
    return load_config(path)


def test_only_changed_pipelines_restart_and_table_changes_are_named(tmp_path):
    old = _config(tmp_path)
    new = _config(tmp_path, tables="public.a, public.b", name="d.yaml")
    plan = plan_reload(old, new, ["one", "two"])
    assert (plan.restart, plan.stop, plan.start) == (["one"], [], [])
    assert plan.added == {"one": ["public.b"]} and plan.removed == {}
    back = plan_reload(new, old, ["one", "two"])
    assert back.removed == {"one": ["public.b"]} and back.added == {}
    same = plan_reload(old, _config(tmp_path, name="e.yaml"), ["one", "two"])
    assert same.empty and same.describe() == "nothing changed"


def test_pipelines_come_and_go_but_only_the_chosen_one_runs(tmp_path):
    old = _config(tmp_path)
    new = _config(tmp_path, colls="x, y", name="d.yaml")
    plan = plan_reload(old, new, ["one"])  # the daemon runs one only so far
    assert plan.start == ["two"] and plan.restart == []
    only = plan_reload(old, new, ["one"], only="one")
    assert only.empty
    gone = plan_reload(old, new.model_copy(update={"pipelines": {}}), ["one", "two"])
    assert sorted(gone.stop) == ["one", "two"]


def test_only_a_change_that_adds_tables_and_their_mappings_is_taken_live(tmp_path):
    old = _config(tmp_path).pipelines["one"]
    new = _config(tmp_path, tables="public.b, public.a", name="d.yaml").pipelines["one"]
    assert adds_only(old, new, ["public.b"])
    assert not adds_only(old, new, [])
    mapped = new.model_copy(update={"mappings": [MappingConfig(source="public.b", target="bee")]})
    assert adds_only(old, mapped, ["public.b"])
    # anything else changed too: a restart
    bigger = new.model_copy(update={"batch": new.batch.model_copy(update={"max_rows": 7})})
    assert not adds_only(old, bigger, ["public.b"])
    extra = MappingConfig(source="public.a", target="eh")
    remapped = mapped.model_copy(update={"mappings": [*mapped.mappings, extra]})
    assert not adds_only(old, remapped, ["public.b"])
    slot = new.model_copy(update={"source": new.source.model_copy(update={"slot": "other"})})
    assert not adds_only(old, slot, ["public.b"])
    swapped = _config(tmp_path, tables="public.b", name="e.yaml").pipelines["one"]
    assert not adds_only(old, swapped, ["public.b"])  # a removed, b added
    # a source kind that cannot replace its tables (Mongo here) restarts
    mongo = _config(tmp_path, colls="x, y", name="f.yaml").pipelines["two"]
    assert not adds_only(_config(tmp_path).pipelines["two"], mongo, ["y"])
    # the plan: only a streaming pipeline changes live
    both = _config(tmp_path, tables="public.a, public.b", colls="x, y", name="g.yaml")
    plan = plan_reload(_config(tmp_path), both, ["one", "two"])
    plan.take_live(_config(tmp_path), both, {"one"})
    assert (plan.live, plan.restart) == (["one"], ["two"])
    assert plan.describe().startswith("restarting two; changing without a restart one")
    idle = plan_reload(_config(tmp_path), both, ["one", "two"])
    idle.take_live(_config(tmp_path), both, set())
    assert (idle.live, idle.restart) == ([], ["one", "two"])


def test_live_snapshot_rows_become_updates_and_deletes_stay():
    data = pa.table({"id": [1, 2, 3]})
    batch = ChangeBatch.build(
        "t", data, ops=[OP_READ, OP_DELETE, OP_READ], positions=["1", "2", "3"], key=["id"]
    )
    out = as_updates(batch)
    assert out.data.column("_op").to_pylist() == [OP_UPDATE, OP_DELETE, OP_UPDATE]
    assert out.data.column("id").to_pylist() == [1, 2, 3]
    assert out.data.schema == batch.data.schema
