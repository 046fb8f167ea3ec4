"""The two ends of a split fan-out pipeline (:func:`syncengine.config.fanout.split_fanout`),
as :class:`~syncengine.runtime.pipeline.Pipeline` builds them instead of its configured kinds.

* the reader (``orders``): the configured source, the stream as its target, and identity
  mappings that keep each source table's own name (the targets' pipelines map the rows);
* a target's pipeline (``orders.docs``): the stream as its source, its own target, the
  pipeline's mappings and conflict strategy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.config.fanout import fanout_role
from syncengine.config.models import MappingConfig, PipelineConfig

if TYPE_CHECKING:
    from syncengine.sources.base import ChangeSource
    from syncengine.state import StateStore
    from syncengine.targets.base import Target


def fanout_ends(
    name: str, config: PipelineConfig, state: StateStore
) -> tuple[ChangeSource, Target, list[MappingConfig]]:
    """(source, target, mappings) of the fan-out pipeline ``name``."""
    from syncengine.plugins import source_factory
    from syncengine.targets import make_target

    fanout = config.fanout
    assert fanout is not None
    role = fanout_role(name)
    reader = name if role is None else name.rsplit(".", 1)[0]
    # created, not opened (no connection, no slot): a target's pipeline only scans the
    # reader's source, for ``verify``
    source = source_factory(config.source.type).create(reader, config.source, state, config.batch)
    if role is None:
        from syncengine.cluster.fanout.publisher import JetStreamTarget

        return source, JetStreamTarget(name, fanout), reader_mappings(config)
    from syncengine.cluster.fanout.consumer import JetStreamSource

    tables = [config.source_key(t) for t in config.source.table_names()]
    stream_source = JetStreamSource(name, fanout, reader, tables, source)
    target = make_target(name, config.target, state)
    return stream_source, target, config.mappings_for_sources()


def reader_mappings(config: PipelineConfig) -> list[MappingConfig]:
    """Every source table unchanged, under its canonical name (the name a target's pipeline
    looks its mappings up by)."""
    names = [config.source_key(t) for t in config.source.table_names()]
    return [MappingConfig(source=name, target=name) for name in names]
