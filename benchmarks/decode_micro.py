"""Micro-benchmark: µs per change of pgoutput decoding, from XLogData payloads to ChangeBatches.

``python -m benchmarks.decode_micro [N]``: builds N (default 100,000) row-change payloads of the
``pg_cdc`` table shape (:mod:`benchmarks.datagen`: eight columns, transactions of 70 inserts,
25 updates and 5 deletes) as the server sends them in text mode, then times, best of a few runs,
in this process (no servers):

* ``decode``: :func:`pgoutput.decode` of every payload (message objects only);
* ``objects``: decode to message objects, then :meth:`ChangeAssembler.feed` (the path before
  F25), cut into batches of 10,000 rows, including the text → Arrow conversion of every column;
* ``stream``: the same through :meth:`ChangeAssembler.feed_payload` (row messages kept as bytes,
  decoded column-wise for the whole batch when it is cut: :mod:`.rowdecode`), the path the
  source takes.

Numbers are recorded in docs/benchmarks-findings.md (F25, F35).
"""

from __future__ import annotations

import hashlib
import struct
import sys
import time
from collections.abc import Callable

from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler

OID = 16384
COLUMNS = [
    ("id", 20, -1, True),
    ("qty", 23, -1, False),
    ("name", 25, -1, False),
    ("price", 1700, (12 << 16 | 2) + 4, False),
    ("created", 1184, -1, False),
    ("active", 16, -1, False),
    ("attrs", 3802, -1, False),
    ("ref", 2950, -1, False),
]


def _tuple(values: list[bytes | None]) -> bytes:
    out = [struct.pack("!h", len(values))]
    for value in values:
        if value is None:
            out.append(b"n")
        else:
            out.append(b"t" + struct.pack("!i", len(value)) + value)
    return b"".join(out)


def _row(i: int, v: int) -> list[bytes | None]:
    md5 = hashlib.md5(str(i + v).encode()).hexdigest()
    ref = hashlib.md5(str(i).encode()).hexdigest()
    seconds = i + v * 1000
    return [
        str(i).encode(),
        str((i * 7919 + v) % 100000).encode(),
        f"name-{md5}".encode(),
        f"{((i * 31 + v) % 10000000) / 100.0:.2f}".encode(),
        f"2024-01-{1 + seconds // 86400 % 28:02d} {seconds // 3600 % 24:02d}:"
        f"{seconds // 60 % 60:02d}:{seconds % 60:02d}+00".encode(),
        b"t" if (i + v) % 3 == 0 else b"f",
        f'{{"k": {i}, "v": {v}, "tag": "tag{i % 10}", "vals": [{i % 5}, {i % 7}]}}'.encode(),
        f"{ref[:8]}-{ref[8:12]}-{ref[12:16]}-{ref[16:20]}-{ref[20:]}".encode(),
    ]


def payloads(changes: int) -> list[bytes]:
    """Relation, then Begin / 100 changes / Commit per transaction."""
    rel = b"R" + struct.pack("!I", OID) + b"public\x00bench_rows\x00d"
    rel += struct.pack("!h", len(COLUMNS))
    for name, type_oid, typmod, key in COLUMNS:
        rel += bytes([key]) + name.encode() + b"\x00" + struct.pack("!Ii", type_oid, typmod)
    out = [rel]
    lsn, i = 0x1000000, 0
    for txn in range(changes // 100):
        out.append(b"B" + struct.pack("!QqI", lsn + 100_000, 800_000_000_000_000, 1000 + txn))
        first = i
        for _ in range(70):
            out.append(b"I" + struct.pack("!I", OID) + b"N" + _tuple(_row(i, 0)))
            i += 1
        for k in range(first, first + 25):
            out.append(b"U" + struct.pack("!I", OID) + b"N" + _tuple(_row(k, 1)))
        for k in range(first + 25, first + 30):
            old = [str(k).encode()] + [None] * (len(COLUMNS) - 1)
            out.append(b"D" + struct.pack("!I", OID) + b"K" + _tuple(old))
        commit = struct.pack("!BQQq", 0, lsn + 100_000, lsn + 100_100, 800_000_000_000_000)
        out.append(b"C" + commit)
        lsn += 200_000
    return out


def best(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _stream(messages: list[bytes], objects: bool = False) -> int:
    assembler = ChangeAssembler(10_000, {"public.bench_rows": ("id",)})
    rows = 0
    feed = (lambda p: assembler.feed(po.decode(p))) if objects else assembler.feed_payload
    for payload in messages:
        for batch in feed(payload):
            rows += batch.num_rows
    for batch in assembler.flush(idle=True):
        rows += batch.num_rows
    return rows


def main() -> None:
    changes = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    messages = payloads(changes)
    size = sum(len(m) for m in messages)
    print(f"{changes} changes, {len(messages)} payloads, {size / 1e6:.1f} MB")
    decode = best(lambda: [po.decode(m) for m in messages])
    print(f"decode   {decode / changes * 1e6:6.2f} µs/change")
    assert _stream(messages) == changes
    for label, objects in (("objects", True), ("stream", False)):
        took = best(lambda objects=objects: _stream(messages, objects))
        print(f"{label:8} {took / changes * 1e6:6.2f} µs/change  ({changes / took:,.0f} changes/s)")


if __name__ == "__main__":
    main()
