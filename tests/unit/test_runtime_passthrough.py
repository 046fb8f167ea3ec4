"""Which tables the snapshot passthrough may take, decided from the config alone, and which
pairs of kinds may use it: the capabilities they declare, matched by format name."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa

from syncengine.config.models import ConflictsConfig, MappingConfig, PipelineConfig
from syncengine.passthrough import RawChunkExport, RawChunkImport
from syncengine.runtime.passthrough import attach, refusal
from syncengine.sources.base import TableInfo
from syncengine.targets.base import TableSpec


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


# -- which pairs of kinds pass through: declared capabilities, matched by format name --------


class ThirdPartySource:
    """A kind from another package that exports raw chunks (no Postgres anywhere)."""

    def __init__(self, fmt: str | None) -> None:
        self.fmt = fmt
        self.sink: object | None = None

    def raw_chunk_format(self) -> str | None:
        return self.fmt

    def snapshot_tables(self, tables):
        return list(tables) if tables else ["t", "keyless"]

    async def tables(self):
        schema = pa.schema([("id", pa.int64())])
        return [TableInfo("t", ("id",), schema), TableInfo("keyless", (), schema)]

    def use_chunk_sink(self, sink) -> None:
        self.sink = sink


class ThirdPartyTarget:
    def __init__(self, formats: set[str]) -> None:
        self.formats = formats
        self.asked: dict[str, str] | None = None

    def accepts_raw_chunks(self, fmt: str) -> bool:
        return fmt in self.formats

    async def chunk_sink(self, tables):
        self.asked = dict(tables)
        return "the sink"


def fake_pipeline(source, target) -> SimpleNamespace:
    async def target_spec(mapping, schema, key):
        return TableSpec(f"out_{mapping.source}", key, schema)

    return SimpleNamespace(
        name="p",
        source=source,
        target=target,
        config=pipeline(),
        mappings_for=lambda table: [(0, MappingConfig(source=table))],
        target_spec=target_spec,
    )


def test_a_third_party_pair_passes_through_when_the_formats_match():
    source, target = ThirdPartySource("acme-raw"), ThirdPartyTarget({"acme-raw"})
    assert isinstance(source, RawChunkExport) and isinstance(target, RawChunkImport)
    asyncio.run(attach(fake_pipeline(source, target), None))
    assert source.sink == "the sink"
    assert target.asked == {"t": "out_t"}  # the keyless table is decoded


def test_no_sink_when_the_formats_differ_or_a_side_offers_none():
    for source, target in [
        (ThirdPartySource("acme-raw"), ThirdPartyTarget({"other"})),
        (ThirdPartySource(None), ThirdPartyTarget({"acme-raw"})),
        (ThirdPartySource("acme-raw"), object()),
    ]:
        asyncio.run(attach(fake_pipeline(source, target), None))
        assert source.sink is None
        assert getattr(target, "asked", None) is None


def test_the_built_in_postgres_kinds_declare_the_same_format():
    from syncengine.config.models import PostgresSourceConfig, PostgresTargetConfig
    from syncengine.sources.postgres.source import PostgresSource
    from syncengine.targets.postgres.target import PostgresTarget

    config = pipeline()
    assert isinstance(config.source, PostgresSourceConfig)
    assert isinstance(config.target, PostgresTargetConfig)
    source = PostgresSource("p", config.source, None, config.batch)  # type: ignore[arg-type]
    target = PostgresTarget("p", config.target)
    assert isinstance(source, RawChunkExport) and isinstance(target, RawChunkImport)
    fmt = source.raw_chunk_format()
    assert fmt is not None and target.accepts_raw_chunks(fmt)
    incremental = config.source.model_copy(update={"mode": "incremental", "cursor": "u"})
    assert PostgresSource("p", incremental, None, config.batch).raw_chunk_format() is None


def test_the_runtime_names_no_source_or_target_kind():
    """No module of syncengine/runtime imports a kind's package or names a kind's class."""
    kinds = {"postgres", "mongo", "parquet"}
    classes = {"PostgresSource", "PostgresTarget", "MongoSource", "MongoTarget", "ParquetTarget"}
    runtime = Path(__file__).parents[2] / "syncengine" / "runtime"
    for path in sorted(runtime.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                names = {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                modules, names = [a.name for a in node.names], set()
            else:
                modules = []
                names = {node.id} if isinstance(node, ast.Name) else set()
            for module in modules:
                parts = module.split(".")
                assert not (parts[1:2] in (["sources"], ["targets"]) and kinds & set(parts)), (
                    f"{path.name} imports {module}"
                )
            assert not names & classes, f"{path.name} names {names & classes}"
