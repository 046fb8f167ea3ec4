"""Parquet target specifics: file layout, atomic writes, chunks at one position."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from syncengine.config.models import ParquetTargetConfig
from syncengine.state.sqlite import SQLiteStateStore
from syncengine.targets.base import Checkpoint, TableSpec, TableWrite
from syncengine.targets.parquet import ParquetTarget, read_log
from tests.integration.targets.conftest import make_batch, replay_oracle, run

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])
SPEC = TableSpec("items", ("id",), SCHEMA)


def make(root: Path, tmp_path: Path) -> ParquetTarget:
    config = ParquetTargetConfig(type="parquet", path=str(root))
    return ParquetTarget("p", config, SQLiteStateStore(tmp_path / "s.db"))


def test_layout_partitions_by_table_and_commit_date(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    first = make_batch(
        "items",
        ("id",),
        [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}],
        SCHEMA,
        ["c", "c"],
        ["0001", "0002"],
        day=1,
    )
    second = make_batch("items", ("id",), [{"id": 1, "v": "c"}], SCHEMA, ["u"], ["0003"], day=2)
    from syncengine.changes import concat_batches

    async def scenario() -> None:
        t = make(root, tmp_path)
        await t.open()
        await t.apply([TableWrite(SPEC, concat_batches([first, second]))], Checkpoint("s", "0003"))
        assert await t.get_checkpoint("s") == "0003"
        assert (await t.read_rows(SPEC, pa.table({"id": [1]}))).num_rows == 0

    run(scenario())
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "items/date=2026-11-01/0001-0002.parquet",
        "items/date=2026-11-02/0003-0003-" + files[1].rsplit("-", 1)[1],
    ]
    log = read_log(root, "items")
    assert log.column("_op").to_pylist() == ["c", "c", "u"]
    assert {"_pos", "_ts", "_txid", "id", "v"} <= set(log.column_names)
    assert pq.read_metadata(root / files[0]).metadata[b"syncengine.first_pos"] == b"0001"


def test_chunks_at_one_position_do_not_collide(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    chunks = [
        make_batch(
            "items",
            ("id",),
            [{"id": i, "v": "s"} for i in ids],
            SCHEMA,
            ["r"] * len(ids),
            ["0100"] * len(ids),
        )
        for ids in ([1, 2], [3, 4])
    ]

    async def scenario() -> None:
        t = make(root, tmp_path)
        await t.open()
        for chunk in chunks:
            await t.apply([TableWrite(SPEC, chunk)], None)
        await t.apply([TableWrite(SPEC, chunks[0])], None)  # a replayed chunk overwrites itself

    run(scenario())
    assert len(list(root.rglob("*.parquet"))) == 2
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(replay_oracle(root, SPEC)) == [(1,), (2,), (3,), (4,)]


def test_uncompacted_changes_are_logged_in_order_once(tmp_path: Path) -> None:
    """The runtime hands a change log every change uncompacted (several per key)."""
    root = tmp_path / "lake"
    rows = [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 1, "v": None}, {"id": 1, "v": "c"}]
    batch = make_batch(
        "items", ("id",), rows, SCHEMA, ["c", "u", "d", "c"], ["01", "02", "03", "04"]
    )

    async def scenario() -> None:
        t = make(root, tmp_path)
        await t.open()
        await t.apply([TableWrite(SPEC, batch)], Checkpoint("s", "04"))
        await t.apply([TableWrite(SPEC, batch)], Checkpoint("s", "04"))
        assert [c.to_pylist() async for c in t.scan(SPEC)] == [[{"id": 1, "v": "c"}]]

    run(scenario())
    log = read_log(root, "items")
    assert log.column("_op").to_pylist() == ["c", "u", "d", "c"]
    assert replay_oracle(root, SPEC) == {(1,): {"id": 1, "v": "c"}}
