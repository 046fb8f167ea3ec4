"""A table copied beside the stream, into a target that lacks its rows: an update that leaves
an unchanged TOASTed value unsent arrives before the chunk row that holds the value.

Before ``syncengine/runtime/unsent.py`` the update created the row with the column empty and
the chunk row, older, was dropped by the position fence: the value was lost for good. Now the
stream rows of a table under a live copy have their unsent columns read back from the source
first. Real source and target; the two batches are built as the decoder and the snapshot
build them, in the order of the race (the update applied first), so the case is certain."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime

import pyarrow as pa

from syncengine.changes import OP_READ, ChangeBatch
from syncengine.config import parse_config
from syncengine.runtime.pipeline import Pipeline
from syncengine.runtime.tableops import as_updates
from syncengine.state import SQLiteStateStore
from tests.e2e.harness import execute, rows

TABLE = "public.items"
BLOB = "SELECT id, n, md5(blob), tags FROM items ORDER BY id"


def pipeline_config(src: str, tgt: str):
    text = textwrap.dedent(
        f"""
        pipelines:
          p:
            source: {{type: postgres, dsn: "{src}", tables: [{TABLE}]}}
            target: {{type: postgres, dsn: "{tgt}"}}
        """
    )
    return parse_config(text, env={}).pipelines["p"]


def images(
    ids: list[int], n: list[int], blobs: list[str | None], tags: list[list[int] | None]
) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int32()),
            "n": pa.array(n, pa.int64()),
            "blob": pa.array(blobs, pa.string()),
            "tags": pa.array(tags, pa.list_(pa.int32())),
        }
    )


def test_an_unsent_value_reaches_a_row_the_copy_has_not_landed_yet(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, n bigint NOT NULL, blob text, tags int[])",
        "ALTER TABLE items ALTER COLUMN blob SET STORAGE EXTERNAL",
        "INSERT INTO items SELECT g, 0, repeat(md5(g::text), 100), ARRAY[g, g + 1] "
        "FROM generate_series(1, 3) g",
    )
    now = datetime.now(UTC)

    async def scenario() -> None:
        pipeline = Pipeline(
            "p", pipeline_config(pg_dsn, pg_target_dsn), SQLiteStateStore(tmp_path / "s.db")
        )
        try:
            await pipeline.target.open()
            await pipeline.source.open()
            pipeline.dense_fence.add(TABLE)  # the table's live copy runs
            # the stream: n of 1 and 2 updated at position P, the blob unchanged (unsent);
            # key 2 is gone from the source meanwhile (its delete follows in the stream)
            execute(pg_dsn, "UPDATE items SET n = 5 WHERE id = 1", "DELETE FROM items WHERE id = 2")
            change = ChangeBatch.build(
                TABLE,
                images([1, 2], [5, 5], [None, None], [None, None]),
                ops=["u", "u"],
                positions=["0000000010000000.00000001"] * 2,
                ts=[now, now],
                key=["id"],
                unsent={"blob": [True, True], "tags": [True, True]},
            )
            await pipeline.process([change], None)
            # a batch whose every key is gone from the source: nothing to read back
            gone = ChangeBatch.build(
                TABLE,
                images([2], [6], [None], [None]),
                ops=["u"],
                positions=["0000000010000000.00000002"],
                ts=[now],
                key=["id"],
                unsent={"blob": [True], "tags": [True]},
            )
            await pipeline.process([gone], None)
            # then the chunk, read before the update (position L < P), lands
            chunk = ChangeBatch.build(
                TABLE,
                images(
                    [1, 3],
                    [0, 0],
                    [f"{'c4ca4238a0b923820dcc509a6f75849b' * 100}", None],
                    [[1, 2], None],
                ),
                ops=[OP_READ] * 2,
                positions=["0000000001000000"] * 2,
                ts=[now, now],
                key=["id"],
                meta={"snapshot": True, "chunk": 0},
            )
            await pipeline.process([as_updates(chunk)], None)
        finally:
            await pipeline.close()

    asyncio.run(scenario())
    target = rows(pg_target_dsn, BLOB)
    source = rows(pg_dsn, BLOB)
    assert target[0] == source[0]  # id 1: n from the update, the blob from the source
    assert target[0][2] is not None
    assert target[0][3] == [1, 2]
    assert target[1] == (2, 6, None, None)  # gone from the source: unsent, until its delete
