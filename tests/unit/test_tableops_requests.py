"""Table requests in the state store, the daemon lookup through the lock, and ``--where``
checks (issue 19)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from syncengine.errors import UsageError
from syncengine.runtime.wherecheck import check_where
from syncengine.state.locks import Holder
from syncengine.state.sqlite import SQLiteStateStore


def test_requests_are_deduplicated_and_tracked(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    first = store.request_table("p", "public.a", "resnapshot", None)
    assert store.request_table("p", "public.a", "resnapshot", None) == first
    other = store.request_table("p", "public.a", "resnapshot", "id > 5")
    assert other != first
    store.update_table_request(first, "running")
    assert [(r.id, r.status) for r in store.table_requests("p")] == [
        (first, "running"),
        (other, "pending"),
    ]
    store.update_table_request(first, "failed", "boom")
    assert [r.id for r in store.table_requests("p")] == [other]
    failed = [r for r in store.table_requests("p", open_only=False) if r.id == first]
    assert failed[0].error == "boom"
    assert store.request_table("p", "public.a", "resnapshot", None) not in (first, other)
    assert store.table_requests("q") == []


def _hold(path: str, ready, release) -> None:
    store = SQLiteStateStore(path)
    with store.lock("p", "run"):
        ready.set()
        release.wait(10)


def test_lock_holder_names_the_daemon(tmp_path):
    path = str(tmp_path / "state.db")
    store = SQLiteStateStore(path)
    assert store.lock("p", "resnapshot").holder() is None
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(path, ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        assert store.lock("p", "resnapshot").holder() == Holder(proc.pid, "run")
    finally:
        release.set()
        proc.join(10)
    assert store.lock("p", "resnapshot").holder() is None
    assert proc.pid != os.getpid()


@pytest.mark.parametrize(
    "where",
    ["id > 5", "status = 'a--b' AND qty BETWEEN 1 AND 3", "id IN (SELECT id FROM other)"],
)
def test_postgres_where_accepts_one_predicate(where):
    check_where("postgres", where)


@pytest.mark.parametrize(
    "where",
    ["1=1; DROP TABLE a", "SELECT 1", "id > 5 -- rest", "id > 5 /* x */", "id > 5) OR (1=1", " "],
)
def test_postgres_where_refuses_statements_and_comments(where):
    with pytest.raises(UsageError):
        check_where("postgres", where)


def test_mongo_where_refuses_javascript():
    check_where("mongo", '{"qty": {"$gt": 1}}')
    check_where("mongo", "qty > 1")
    with pytest.raises(UsageError):
        check_where("mongo", '{"$where": "this.qty > 1"}')
    with pytest.raises(UsageError):
        check_where("mongo", '{"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}')


def test_a_live_copy_is_settled_by_the_committed_checkpoint_unless_its_table_is_paused(tmp_path):
    """``Pipeline._settled``: a live copy's batch carries the checkpoint the stream committed
    last (its rows at or below it need no fence row), except before any commit and for a
    paused table, whose held changes are released over the copied rows later."""
    from types import SimpleNamespace

    import pyarrow as pa

    from syncengine.changes import LIVE_COPY, SETTLED, ChangeBatch
    from syncengine.runtime.pipeline import Pipeline

    def batch(table: str, **meta: object) -> ChangeBatch:
        data = pa.table({"id": [1], "_op": ["u"], "_pos": ["0000000000000001"]})
        return ChangeBatch(table, data, ("id",), dict(meta))

    state = SQLiteStateStore(tmp_path / "s.db")
    try:
        pipeline = SimpleNamespace(name="p", state=state, committed=None)
        copies = [batch("public.a", **{LIVE_COPY: True}), batch("public.b", **{LIVE_COPY: True})]
        stream = batch("public.a")

        settled = Pipeline._settled(pipeline, [*copies, stream])  # type: ignore[arg-type]
        assert [SETTLED in b.meta for b in settled] == [False, False, False]

        pipeline.committed = "00000000000000A0"
        state.request_pause("p", ["public.b"], "pausing")
        settled = Pipeline._settled(pipeline, [*copies, stream])  # type: ignore[arg-type]
        assert [b.meta.get(SETTLED) for b in settled] == ["00000000000000A0", None, None]
    finally:
        state.close()


def test_whether_the_target_is_empty_is_noted_or_asked_and_a_failure_means_sweep():
    """``TableOps._target_empty``: what the request noted wins; otherwise the target is asked
    for each mapped table; a target that cannot tell, or fails to, leaves it unknown (the
    copy then sweeps), never stops the copy."""
    import asyncio
    from types import SimpleNamespace

    from syncengine.runtime.tableops import TableOps
    from syncengine.state.base import TableRequest

    asked: list[str] = []

    async def holds_rows(table: str) -> bool:
        asked.append(table)
        if table == "broken":
            raise RuntimeError("connection refused")
        return table == "full"

    def ops(*targets: str, target: object | None = None) -> TableOps:
        mappings = [(i, SimpleNamespace(target_name=t)) for i, t in enumerate(targets)]
        pipeline = SimpleNamespace(
            name="p",
            state=None,
            target=target if target is not None else SimpleNamespace(holds_rows=holds_rows),
            mappings_for=lambda table: mappings,
        )
        return TableOps(pipeline)  # type: ignore[arg-type]

    request = TableRequest(1, "p", "public.a", "resnapshot")
    run = asyncio.run
    assert run(ops("empty", "empty2")._target_empty(request)) is True
    assert run(ops("empty", "full")._target_empty(request)) is False
    assert run(ops("broken")._target_empty(request)) is None
    assert run(ops("x", target=SimpleNamespace())._target_empty(request)) is None
    noted = TableRequest(1, "p", "public.a", "resnapshot", target_empty=False)
    asked.clear()
    assert run(ops("empty")._target_empty(noted)) is False and asked == []
    where = TableRequest(1, "p", "public.a", "resnapshot", where="id > 5")
    assert run(ops("empty")._target_empty(where)) is None and asked == []
