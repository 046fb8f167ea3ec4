"""Two-way restatement (runtime/restate.py): stream batches become their keys' present rows
(prefer), and timestamp echoes keep only the sibling's own writes, each with the version it
recorded. The source here is a small in-memory table answering the two reads, not a driver."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import ECHO, ChangeBatch
from syncengine.runtime import restate

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


class Rows:
    """Present rows of ``public.items`` by id; ``mine``: ids last written by the sibling;
    ``recorded``: id → (version time, deleted) the sibling recorded."""

    def __init__(self, rows: dict[int, str], mine=(), recorded=None) -> None:
        self.rows, self.mine, self.recorded = rows, set(mine), recorded or {}
        #: (versions name, origins) the source is asked about
        self.asked: list[tuple[str, list[str]]] = []

    async def current_rows(self, table, key, schema, keys):
        wanted = [i for i in keys.column("id").to_pylist() if i in self.rows]
        return pa.table(
            {"id": pa.array(wanted, pa.int64()), "name": [self.rows[i] for i in wanted]}
        )

    async def sibling_versions(self, table, key, keys, row_keys, sibling):
        self.asked.append((sibling[0], list(sibling[1])))
        ids = [i for i in keys.column("id").to_pylist() if i in self.rows]
        commits = pa.table(
            {"id": pa.array(ids, pa.int64()), "_mine": [i in self.mine for i in ids]}
        )
        known = [(f'{{"id":{i}}}', *v) for i, v in self.recorded.items()]
        recorded = pa.table(
            {
                "row_key": [k for k, _, _ in known],
                "ts": pa.array([t for _, t, _ in known], pa.timestamp("us", tz="UTC")),
                "side": ["remote"] * len(known),
                "deleted": [d for _, _, d in known],
            }
        )
        return commits, recorded


def batch(ids: list[int], ops: list[str], echo: bool = False) -> ChangeBatch:
    rows = pa.table({"id": pa.array(ids, pa.int64()), "name": [f"old{i}" for i in ids]})
    return ChangeBatch.build(
        "public.items",
        rows,
        ops=ops,
        positions=[f"{n:016X}.00000000" for n in range(1, len(ids) + 1)],
        ts=[T0 + dt.timedelta(seconds=n) for n in range(len(ids))],
        key=["id"],
        meta={ECHO: True, "resume": "x"} if echo else {"resume": "x"},
    )


def pipeline(source: Rows, name: str = "orders.reverse") -> SimpleNamespace:
    return SimpleNamespace(source=source, name=name)


def test_prefer_applies_present_rows_for_changes_and_echoes():
    source = Rows({1: "now1", 3: "now3"})
    incoming = [batch([1, 2, 1], ["u", "u", "u"]), batch([3, 4], ["c", "u"], echo=True)]
    out = asyncio.run(restate.restate(pipeline(source), incoming))
    first, second = (b.data.to_pydict() for b in out)
    # one row per key, the key's last position, its present row or a delete
    assert first["id"] == [2, 1] and first["_op"] == ["d", "u"]
    assert first["name"] == [None, "now1"]
    assert first["_pos"] == ["0000000000000002.00000000", "0000000000000003.00000000"]
    assert second["name"] == ["now3", None] and second["_op"] == ["u", "d"]
    assert ECHO not in out[1].meta and out[1].meta["resume"] == "x"


def test_snapshot_rows_and_truncates_pass_unchanged():
    source = Rows({})
    read = batch([1], ["r"])
    truncated = batch([1, 2], ["t", "u"])
    out = asyncio.run(restate.restate(pipeline(source), [read, truncated]))
    assert out == [read, truncated]


def test_timestamp_echoes_keep_only_the_siblings_writes_with_their_recorded_versions():
    source = Rows(
        {1: "mine1", 2: "person2", 5: "mine5"},
        mine={1, 5},
        recorded={
            1: (T0 + dt.timedelta(seconds=30), False),  # its row, written at 30 s
            3: (T0 + dt.timedelta(seconds=40), True),  # it deleted 3, still absent
            4: (T0 + dt.timedelta(seconds=50), False),  # it wrote 4, a person deleted it since
        },
    )
    echoes = [batch([1, 2, 3, 4, 5], ["u", "u", "d", "u", "u"], echo=True)]
    (out,) = asyncio.run(restate.versioned_echoes(pipeline(source), echoes))
    data = out.data.to_pydict()
    # 2: a person's row (its change comes next in the stream); 4: deleted by a person since;
    # 5: the sibling's row but no version recorded for it: nothing to judge it by
    assert data["id"] == [1, 3] and data["_op"] == ["u", "d"]
    assert data["name"] == ["mine1", None]
    assert data["_ts"] == [T0 + dt.timedelta(seconds=30), T0 + dt.timedelta(seconds=40)]
    assert out.meta[ECHO] is True
    assert pc.all(pc.is_valid(out.data.column("_pos"))).as_py()
    assert source.asked == [("orders", ["syncengine_orders"])]


def test_a_mesh_echo_is_asked_about_under_the_siblings_node():
    """In a mesh the sibling (``shop.a>b`` of ``shop.b>a``) records versions under the node
    it writes into, shared with every other direction into that node."""
    source = Rows({1: "mine1"}, mine={1}, recorded={1: (T0, False)})
    echoes = [batch([1], ["u"], echo=True)]
    (out,) = asyncio.run(restate.versioned_echoes(pipeline(source, "shop.b>a"), echoes))
    assert out.data.column("id").to_pylist() == [1]
    assert source.asked == [("shop@b", ["syncengine_shop__a__b"])]


def test_only_echoes_are_versioned():
    source = Rows({1: "now"}, mine={1}, recorded={1: (T0, False)})
    change = batch([1], ["u"])
    assert asyncio.run(restate.versioned_echoes(pipeline(source), [change])) == [change]


def test_a_mesh_direction_drops_changes_an_engine_write_at_its_source_superseded():
    """``shop.b>c``: b's own changes older than what another node's direction since wrote
    at b (a row, or a delete) can never win; applied late they would resurrect a row over a
    person's delete at c that nothing corrects."""
    source = Rows(
        {1: "from a", 2: "person", 4: "from a, older"},
        mine={1, 4},
        recorded={
            1: (T0 + dt.timedelta(seconds=30), False),  # a's row, newer than the change
            3: (T0 + dt.timedelta(seconds=40), True),  # a's delete, newer than the change
            4: (T0 - dt.timedelta(seconds=10), False),  # a's row, older than the change
        },
    )
    mesh = SimpleNamespace(
        source=source,
        name="shop.b>c",
        config=SimpleNamespace(source=SimpleNamespace(ignore_origins=["syncengine_shop__a__b"])),
    )
    changes = [batch([1, 2, 3, 4], ["u", "u", "u", "u"])]
    assert restate.drops_superseded(mesh)  # type: ignore[arg-type]
    (out,) = asyncio.run(restate.without_superseded(mesh, changes))  # type: ignore[arg-type]
    # 2: a person's row at b (its change is this one or comes next); 4: the change is newer
    assert out.data.column("id").to_pylist() == [2, 4]
    assert out.meta == changes[0].meta
    assert source.asked == [("shop@b", ["syncengine_shop__c__b", "syncengine_shop__a__b"])]
    # echoes are left to versioned_echoes
    echo = batch([1], ["u"], echo=True)
    assert asyncio.run(restate.without_superseded(mesh, [echo])) == [echo]  # type: ignore[arg-type]
