"""The state protocols: together they cover the whole SQLite store, each concern's methods once,
and the methods that took over SQL callers used to run themselves keep its effect."""

from __future__ import annotations

import inspect

from syncengine.state import open_state, protocols
from syncengine.state.sqlite import SQLiteStateStore

CONCERNS = [
    protocols.Transactional,
    protocols.CheckpointStore,
    protocols.SnapshotProgress,
    protocols.ShadowStore,
    protocols.ConflictQueue,
    protocols.DeadLetters,
    protocols.PipelineStatus,
    protocols.TableStatus,
    protocols.LagHistory,
    protocols.TablePauses,
    protocols.TableRequests,
    protocols.TableForgetting,
    protocols.Locks,
]


def _declared(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")}


def test_each_method_belongs_to_one_concern_and_the_store_has_no_other():
    seen: dict[str, type] = {}
    for concern in CONCERNS:
        for name in _declared(concern):
            assert name not in seen, f"{name} in {seen.get(name)} and {concern}"
            seen[name] = concern
    public = {n for n in dir(SQLiteStateStore) if not n.startswith("_")}
    # db and close belong to the SQLite file itself, not to a concern
    assert public - set(seen) == {"db", "close"}
    assert set(seen) <= public
    for combined in (protocols.SourceState, protocols.TargetState, protocols.StateStore):
        assert not _declared(combined), f"{combined.__name__} only joins concerns"


def test_clear_shadow_drops_one_tables_rows_only(tmp_path):
    store = open_state(tmp_path / "state.db")
    with store.transaction() as db:
        store.write_shadow(db, "p", "t", [("a", "h", None, "01"), ("b", "h", None, "01")])
        store.write_shadow(db, "p", "u", [("a", "h", None, "01")])
        store.write_shadow(db, "q", "t", [("a", "h", None, "01")])
    with store.transaction() as db:
        store.clear_shadow(db, "p", "t")
    assert store.get_shadow("p", "t", ["a", "b"]) == {}
    assert set(store.get_shadow("p", "u", ["a"])) == {"a"}
    assert set(store.get_shadow("q", "t", ["a"])) == {"a"}


def test_status_round_trips_per_pipeline(tmp_path):
    store = open_state(tmp_path / "state.db")
    assert store.get_status("p") == {}
    store.put_status("p", {"rows_applied": 3, "last_error": None})
    store.put_status("p", {"rows_applied": 5, "last_error": "boom"})
    assert store.get_status("p") == {"rows_applied": 5, "last_error": "boom"}
    assert store.get_status("q") == {}


def _signature(function: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations differ: each names its own handle)."""
    params = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in params]


def test_target_database_state_implements_its_protocols_structurally():
    """Every method of the async target-state protocols exists on each implementation, as a
    coroutine function with the protocol's parameters (mypy checks the types where the targets
    assign the implementations to protocol-typed attributes)."""
    from syncengine.state import targetdb
    from syncengine.targets.mongo.state import MongoTargetState
    from syncengine.targets.postgres.state import PostgresTargetState

    implementations = {
        PostgresTargetState: [targetdb.TargetDatabaseState, targetdb.TargetSnapshotProgress],
        MongoTargetState: [targetdb.TargetDatabaseState],
    }
    for implementation, concerns in implementations.items():
        for concern in concerns:
            for base in concern.__mro__:
                for name in _declared(base) if base.__module__ == targetdb.__name__ else ():
                    method = getattr(implementation, name, None)
                    assert inspect.iscoroutinefunction(method), f"{implementation}.{name}"
                    wanted = _signature(getattr(base, name))
                    assert _signature(method) == wanted, f"{implementation.__name__}.{name}"
