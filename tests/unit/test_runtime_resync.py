"""Which pipelines a resync sweeps (syncengine/runtime/resync.py): never a direction whose
target is another direction's source, where a row only the target has may be a new write."""

from __future__ import annotations

from syncengine.config.models import PipelineConfig
from syncengine.runtime.resync import sweeps

ONE_WAY = {
    "source": {"type": "postgres", "dsn": "postgresql://a/b", "tables": ["public.t"]},
    "target": {"type": "postgres", "dsn": "postgresql://c/d"},
}


def test_a_one_way_pipeline_is_swept_and_a_two_way_direction_is_not() -> None:
    one_way = PipelineConfig.model_validate(ONE_WAY)
    assert sweeps(one_way)
    assert not sweeps(PipelineConfig.model_validate({**ONE_WAY, "two_way": True}))
    # a reverse direction (copies nothing) and a mesh direction (reads with own origins)
    reverse = one_way.model_copy(
        update={"backfill": one_way.backfill.model_copy(update={"copy_rows": False})}
    )
    assert not sweeps(reverse)
    mesh = one_way.model_copy(
        update={"source": one_way.source.model_copy(update={"own_origins": ["mesh_a_b"]})}
    )
    assert not sweeps(mesh)
