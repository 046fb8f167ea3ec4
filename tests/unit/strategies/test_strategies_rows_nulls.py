"""Row hashes: a missing field and a null one are the same row; long values hash by digest."""

from __future__ import annotations

import polars as pl

from syncengine.conflicts.rows import (
    DIGEST_ABOVE,
    EXISTS,
    HASH_SEED,
    encode_rows,
    hash_texts,
    retag_hashes,
    row_hashes,
    without_nulls,
)


def test_null_members_are_dropped_at_every_depth_but_not_inside_strings():
    texts = pl.Series(
        [
            '{"a":null}',
            '{"a":null,"b":1,"c":null,"d":null}',
            '{"x":"q,\\":null","y":{"z":null,"w":[null,1]},"v":null}',
            '{"":null,"k":"null"}',
        ]
    )
    assert without_nulls(texts).to_list() == [
        "{}",
        '{"b":1}',
        '{"x":"q,\\":null","y":{"w":[null,1]}}',
        '{"k":"null"}',
    ]


def test_rows_differing_only_in_absent_columns_hash_alike():
    hashes = hash_texts(pl.Series(['{"_id":1,"a":2}', '{"_id":1,"a":2,"z":null}', '{"_id":1}']))
    assert hashes[0] == hashes[1] != hashes[2]


def _rows(**columns: list) -> pl.DataFrame:
    frame = pl.DataFrame(columns)
    return frame.with_columns(pl.lit(True).alias(EXISTS))


def test_long_values_hash_by_digest_and_stay_distinct():
    """Long texts and binaries are hashed through a digest: equal values hash alike, a one-byte
    change does not, and a short text that spells a digest never equals the long value."""
    long = "x" * (DIGEST_ABOVE + 1)
    changed = long[:-1] + "y"
    digest = "h:" + str(pl.Series([long]).hash(seed=HASH_SEED)[0])
    frame = _rows(id=[1, 1, 1, 1, 1], big=[long, long, changed, digest, None])
    hashes = row_hashes(frame, ["id", "big"])
    assert hashes[0] == hashes[1]
    assert len(set(hashes.to_list()[1:])) == 4
    blobs = _rows(id=[1, 1, 1], b=[long.encode(), long.encode(), b"short"])
    blob_hashes = row_hashes(blobs, ["id", "b"])
    assert blob_hashes[0] == blob_hashes[1] != blob_hashes[2]


def test_row_hashes_ignore_absent_rows_and_null_columns():
    frame = pl.DataFrame(
        {"id": [1, 1, 1], "a": [2, 2, 2], "z": [None, None, None], EXISTS: [True, True, False]},
        schema_overrides={"z": pl.String},
    )
    with_z = row_hashes(frame, ["id", "a", "z"])
    without_z = row_hashes(frame, ["id", "a"])
    assert with_z[0] == without_z[0] == with_z[1]
    assert with_z[2] is None


def test_stored_hashes_of_another_scheme_are_recomputed_from_the_base():
    """A shadow written by another Polars version or hashing scheme is re-hashed from its stored
    row JSON, so an upgrade does not turn every key into a conflict."""
    schema = {"id": pl.Int64, "big": pl.String}
    rows = _rows(id=[1, 2], big=["v" * 5000, "short"])
    fresh = row_hashes(rows, ["id", "big"])
    bases = encode_rows(rows, ["id", "big"])
    stored = pl.Series(["pl0.0.0n:123", None])  # an old tag; a tombstone stays null
    assert retag_hashes(stored, bases, schema).to_list() == [fresh[0], None]
    assert retag_hashes(fresh, bases, schema).to_list() == fresh.to_list()
