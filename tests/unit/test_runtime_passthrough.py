"""Which tables the snapshot passthrough may take, decided from the config alone."""

from __future__ import annotations

from syncengine.config.models import ConflictsConfig, MappingConfig, PipelineConfig
from syncengine.runtime.passthrough import refusal


def pipeline(strategy: str = "remote") -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": "postgresql://x/y", "tables": ["public.t"]},
            "target": {"type": "postgres", "dsn": "postgresql://x/z"},
            "conflicts": {"strategy": strategy},
        }
    )


def test_an_identity_mapping_under_remote_passes():
    assert refusal(pipeline(), [MappingConfig(source="public.t")]) is None
    renamed = MappingConfig(source="public.t", target="copy_of_t", key=["id"])
    assert refusal(pipeline(), [renamed]) is None


def test_anything_that_changes_or_inspects_rows_is_decoded():
    cases = {
        "computes fields": MappingConfig(source="public.t", fields={"id": "id"}),
        "excludes fields": MappingConfig(source="public.t", exclude=["secret"]),
        "strategy merge": MappingConfig(
            source="public.t", conflicts=ConflictsConfig(strategy="merge")
        ),
    }
    for expected, mapping in cases.items():
        reason = refusal(pipeline(), [mapping])
        assert reason is not None and expected in reason, (expected, reason)


def test_a_filter_is_left_to_the_snapshot_which_pushes_it_or_decodes():
    assert refusal(pipeline(), [MappingConfig(source="public.t", filter="id > 3")]) is None


def test_the_pipeline_strategy_and_fan_out_count():
    assert "strategy manual" in (refusal(pipeline("manual"), [MappingConfig(source="t")]) or "")
    remote = MappingConfig(source="t", conflicts=ConflictsConfig(strategy="remote"))
    assert refusal(pipeline("local"), [remote]) is None  # the mapping's override wins
    two = [MappingConfig(source="t"), MappingConfig(source="t", target="t2")]
    assert refusal(pipeline(), two) == "2 mappings read it"
    assert refusal(pipeline(), []) == "0 mappings read it"
