"""Null members do not count in row hashes: a missing field and a null one are the same row."""

from __future__ import annotations

import polars as pl

from syncengine.conflicts.rows import hash_texts, without_nulls


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
