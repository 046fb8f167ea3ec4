"""Which partition a change goes to: a hash of its key that every process computes alike.

Per-key order holds only if a key lands in the same partition on every publish, from every
reader process, before and after an upgrade. Polars' and Python's hashes promise neither (they
change across versions and are seeded per process), so the key is hashed here: its canonical
JSON text (the shadow's row key, :func:`syncengine.conflicts.rows.row_keys`) run through a
polynomial hash over the bytes and a 64-bit finalizer, vectorized with NumPy over the Arrow
string buffers (no per-row Python). :data:`EXPECTED` in the unit tests pins the values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1's prime, as the polynomial's base
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's fmix64 constants
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)


def key_texts(data: pa.Table, key: Sequence[str]) -> pa.Array:
    """The canonical JSON text of each row's key, ``{"id":1}``."""
    import polars as pl

    from syncengine.conflicts.rows import row_keys

    frame = pl.from_arrow(data.select(list(key)), rechunk=True)
    assert isinstance(frame, pl.DataFrame)
    return row_keys(frame, key).to_arrow()


def stable_hash(texts: pa.Array) -> np.ndarray:
    """A uint64 per string: sum of byte[i] * base^(n-1-i) mod 2^64, then fmix64."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.cast(texts, pa.large_string())
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[texts.offset : texts.offset + n + 1]
    start = int(offsets[0])
    raw = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] else np.zeros(0, np.uint8)
    data = raw[start : int(offsets[-1])].astype(np.uint64)
    lengths = np.diff(offsets)
    rel = offsets[:-1] - start
    # each byte's distance from its string's end: its power of the base
    ends = np.repeat(rel + lengths, lengths)
    exponent = ends - np.arange(len(data), dtype=np.int64) - 1
    powers = _powers(int(lengths.max(initial=0)))
    with np.errstate(over="ignore"):
        terms = data * powers[exponent] if len(data) else data
        sums = np.zeros(n, dtype=np.uint64)
        nonempty = lengths > 0
        if len(data):
            sums[nonempty] = np.add.reduceat(terms, rel[nonempty])
        sums ^= lengths.astype(np.uint64)  # "" and "\0" differ
        return _fmix64(sums)


def partitions_of(data: pa.Table, key: Sequence[str], partitions: int) -> np.ndarray:
    """The partition (0 … ``partitions`` - 1) of each row of ``data``. Keyless rows (no
    ``key``) all go to partition 0: their order is the table's order."""
    if partitions == 1 or not key or not data.num_rows:
        return np.zeros(data.num_rows, dtype=np.int64)
    hashes = stable_hash(key_texts(data, key))
    return (hashes % np.uint64(partitions)).astype(np.int64)


def _powers(length: int) -> np.ndarray:
    """base^0 … base^(length-1) mod 2^64 (NumPy's unsigned products wrap)."""
    powers = np.full(max(length, 1), _MULTIPLIER, dtype=np.uint64)
    powers[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(powers, dtype=np.uint64)


def _fmix64(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * _MIX1
        h = h ^ (h >> np.uint64(33))
        h = h * _MIX2
        mixed: np.ndarray = h ^ (h >> np.uint64(33))
        return mixed
