"""What a source kind gives the engine: the contract of the ``syncengine.sources`` registry.

A kind (built-in or from another package) registers one object of this shape under its
name in the ``syncengine.sources`` entry point group. From it the engine takes the config
model (the ``source:`` union of every command is built from the registered kinds), builds the
reader for a pipeline, and runs the kind's readiness checks in ``validate``.

The factory's module must stay light: it imports its config model, and its driver and reader
only inside :meth:`SourceFactory.create` and the checks, so loading a config never loads a
database driver (``tests/unit/test_cli_imports.py``). docs/extending.md walks through a kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from syncengine.config.base import SourceConfigBase
    from syncengine.config.models import BatchConfig, PipelineConfig
    from syncengine.sources.base import ChangeSource
    from syncengine.state.protocols import SourceState


@runtime_checkable
class SourceFactory(Protocol):
    #: the ``type:`` that selects the kind; also its entry point name
    name: str
    #: the kind's config model: a :class:`~syncengine.config.base.SourceConfigBase` with
    #: ``type: Literal["<name>"]``
    config: type[SourceConfigBase]

    def create(
        self, pipeline: str, config: Any, state: SourceState, batch: BatchConfig
    ) -> ChangeSource:
        """The reader for one pipeline (``config`` is an instance of :attr:`config`; chunk
        progress goes to ``state``). Must not connect: :meth:`ChangeSource.open` does."""
        ...

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        """Problems that stop the pipeline from working (unreachable, missing permission,
        server setting), each naming the fix; ``validate`` prefixes them with the path."""
        ...

    async def notes(self, pipeline: str, config: PipelineConfig) -> list[str]:
        """What ``validate`` should tell although nothing is wrong (may be empty)."""
        ...
