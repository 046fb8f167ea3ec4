from __future__ import annotations

import polars as pl

from syncengine.runtime.compare import compare_frames


def frames():
    source = pl.DataFrame(
        {
            "id": list(range(1000)),
            "name": [f"n{i}" for i in range(1000)],
            "doc": [{"a": i, "b": [i, i + 1]} for i in range(1000)],
        }
    )
    return source, source.clone()


def test_identical_tables_have_no_differences_even_with_other_int_types():
    source, target = frames()
    target = target.with_columns(pl.col("id").cast(pl.Int32))
    diff = compare_frames("t", source, target, ["id"])
    assert diff.ok and diff.buckets_differing == 0 and diff.source_rows == 1000


def test_missing_extra_and_changed_rows_are_named_with_fields():
    source, target = frames()
    target = target.filter(pl.col("id") != 5)
    target = target.with_columns(
        pl.when(pl.col("id") == 7).then(pl.lit("edited")).otherwise(pl.col("name")).alias("name")
    )
    target = pl.concat(
        [target, pl.DataFrame({"id": [5000], "name": ["x"], "doc": [{"a": 0, "b": [0]}]})]
    )
    diff = compare_frames("t", source, target, ["id"])
    assert not diff.ok
    assert diff.missing == [5]
    assert diff.extra == [5000]
    assert diff.different == [{"key": 7, "fields": {"name": {"source": "n7", "target": "edited"}}}]


def test_nested_field_difference_is_reported():
    source, target = frames()
    target = target.with_columns(
        pl.when(pl.col("id") == 3)
        .then(pl.struct(pl.lit(99).alias("a"), pl.lit([3, 4]).alias("b")))
        .otherwise(pl.col("doc"))
        .alias("doc")
    )
    diff = compare_frames("t", source, target, ["id"])
    assert [d["key"] for d in diff.different] == [3]
    assert diff.different[0]["fields"]["doc"]["target"]["a"] == 99


def test_keyless_tables_compare_as_multisets():
    source = pl.DataFrame({"a": [1, 1, None, 2], "b": ["x", "x", None, ""]})
    same = pl.DataFrame({"a": [None, 1, 2, 1], "b": [None, "x", "", "x"]})
    assert compare_frames("t", source, same, []).ok
    short = pl.DataFrame({"a": [1, None, 2, 2], "b": ["x", None, "", ""]})
    diff = compare_frames("t", source, short, [])
    assert diff.missing == [{"a": "1", "b": "x", "copies": 1}]
    assert diff.extra == [{"a": "2", "b": "", "copies": 1}]
