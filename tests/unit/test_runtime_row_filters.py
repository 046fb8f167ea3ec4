"""What the runtime hands a source to push down: per table, the filters of every mapping that
reads it, or nothing when one of them reads the table whole."""

from __future__ import annotations

from syncengine.config.models import PipelineConfig
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import SQLiteStateStore


def pipeline(mappings: list[dict]) -> Pipeline:
    config = PipelineConfig.model_validate(
        {
            "source": {
                "type": "postgres",
                "dsn": "postgresql://nowhere/x",
                "tables": ["public.orders", "notes", "events"],
            },
            "target": {"type": "parquet", "path": "/nonexistent"},
            "mappings": mappings,
        }
    )
    return Pipeline("p", config, SQLiteStateStore(":memory:"))


def test_the_source_gets_the_filters_of_every_mapping_of_a_table() -> None:
    p = pipeline(
        [
            {"source": "orders", "target": "open", "filter": "status = 'open'"},
            {
                "source": "public.orders",
                "target": "big",
                "filter": "`total` > 5",
                "dialect": "mysql",
            },
            {"source": "notes", "target": "a", "filter": "n > 1"},
            {"source": "notes", "target": "b"},  # reads every row: nothing can be skipped
        ]
    )
    assert p.source.row_filters == p.row_filters  # type: ignore[attr-defined]
    expected = (("status = 'open'", "postgres"), ("`total` > 5", "mysql"))
    assert p.row_filters("public.orders") == expected
    assert p.row_filters("orders") == expected
    assert p.row_filters("public.notes") == ()
    assert p.row_filters("public.events") == ()  # unmapped: the implicit mapping keeps all
