"""Raw BSON → Arrow: syncengine's decoder vs pymongoarrow, measured in the same run.

Run: ``python -m tests.integration.mongosource.mongosource_bench [N]`` (starts a throwaway
server unless SYNCENGINE_TEST_MONGO_URI is set). Prints rows/s for: fetching raw batches,
decoding them with ``decode_documents`` (the path the source uses), pymongoarrow's decoder on the
same bytes, and what pymongoarrow does to documents whose field types differ.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from bson import Binary, Decimal128, Int64, ObjectId
from pymongo import MongoClient

from syncengine.codecs.bson_arrow import decode_documents
from tests.integration.mongosource.mongosource_helpers import drain, make_source
from tests.servers import running_mongo


def _docs(n: int) -> list[dict]:
    return [
        {
            "_id": ObjectId(),
            "s": f"name{i}",
            "i": i,
            "l": Int64(i * 1_000_000),
            "d": i / 3,
            "dec": Decimal128(f"{i}.25"),
            "b": i % 2 == 0,
            "t": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i),
            "u": Binary.from_uuid(uuid.uuid4()),
            "sub": {"x": i, "y": "z"},
            "arr": [i, i + 1],
        }
        for i in range(n)
    ]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} rows/s ({seconds:.2f} s)"


def bench(uri: str, n: int) -> None:
    warnings.filterwarnings("ignore")  # pymongoarrow's pyarrow ABI warnings
    db = f"bench_{uuid.uuid4().hex[:6]}"
    with MongoClient(uri) as client:
        coll = client[db].docs
        coll.insert_many(_docs(n))
        t = time.perf_counter()
        batches = list(coll.find_raw_batches({}, batch_size=10_000))
        print("fetch raw batches        ", _rate(n, time.perf_counter() - t))
        t = time.perf_counter()
        decode_documents(batches)
        print("syncengine decode        ", _rate(n, time.perf_counter() - t))
        try:
            from pymongoarrow.context import PyMongoArrowContext
        except ImportError:
            print("pymongoarrow not installed (pip install syncengine[mongoarrow])")
        else:
            t = time.perf_counter()
            ctx = PyMongoArrowContext(None)
            for raw in batches:
                ctx.process_bson_stream(raw)
            ctx.finish()
            print("pymongoarrow decode      ", _rate(n, time.perf_counter() - t))
            mixed = client[db].mixed
            mixed.insert_many([{"_id": 1, "v": 1}, {"_id": 2, "v": "two"}, {"_id": 3}])
            ctx = PyMongoArrowContext(None)
            for raw in mixed.find_raw_batches({}):
                ctx.process_bson_stream(raw)
            print("pymongoarrow, v: 1 / 'two' / missing ->", ctx.finish().column("v").to_pylist())
            decoded = decode_documents(list(mixed.find_raw_batches({})))
            print(
                "syncengine,   v: 1 / 'two' / missing ->",
                decoded.table.column("v").to_pylist(),
                "missing:",
                decoded.missing["v"].to_pylist(),
            )
        state = Path(tempfile.mkdtemp())
        # one chunk: on servers without _id range indexes (the test server) chunks rescan
        source = make_source(uri, db, state, ["docs"], snapshot_chunk_docs=n)

        async def snapshot() -> int:
            await source.open()
            try:
                return sum(b.num_rows for b in await drain(source.snapshot(parallel=2)))
            finally:
                await source.close()

        t = time.perf_counter()
        rows = asyncio.run(snapshot())
        print("MongoSource.snapshot    ", _rate(rows, time.perf_counter() - t))
        client.drop_database(db)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    external = os.environ.get("SYNCENGINE_TEST_MONGO_URI")
    if external:
        bench(external, count)
    else:
        with running_mongo() as server:
            bench(server.uri, count)
