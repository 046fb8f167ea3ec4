"""Batches of one target table with different schemas share a spec that never narrows."""

from __future__ import annotations

import pyarrow as pa

from syncengine.runtime.pipeline import common_field


def test_common_field_widens():
    def common(a, b):
        return common_field(pa.field("v", a), pa.field("v", b)).type

    assert common(pa.int64(), pa.float64()) == pa.float64()
    assert common(pa.float64(), pa.int64()) == pa.float64()
    assert common(pa.null(), pa.string()) == pa.string()
    assert common(pa.decimal128(10, 1), pa.decimal128(10, 3)) == pa.decimal128(12, 3)
    assert common(pa.string(), pa.int64()) == pa.string()
    assert common(pa.int32(), pa.int64()) == pa.int64()


def test_widened_cast_keeps_values():
    values = pa.array([0.01, 0.5])
    target = common_field(pa.field("v", pa.int64()), pa.field("v", pa.float64())).type
    assert values.cast(target).to_pylist() == [0.01, 0.5]
