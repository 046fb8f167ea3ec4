"""What a target kind gives the engine: the contract of the ``syncengine.targets`` registry.

A kind (built-in or from another package) registers one object of this shape under its
name in the ``syncengine.targets`` entry point group. From it the engine takes the config
model (the ``target:`` union of every command is built from the registered kinds), builds the
:class:`~syncengine.targets.base.Target` for a pipeline, and runs the kind's readiness checks
in ``validate``.

The factory's module must stay light: it imports its config model, and its driver and client
only inside :meth:`TargetFactory.create` and :meth:`TargetFactory.preflight`, so loading a
config never loads a database driver (``tests/unit/test_cli_imports.py``). docs/extending.md
walks through a kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from syncengine.config.base import TargetConfigBase
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import TargetState
    from syncengine.targets.base import Target


@runtime_checkable
class TargetFactory(Protocol):
    #: the ``type:`` that selects the kind; also its entry point name
    name: str
    #: the kind's config model: a :class:`~syncengine.config.base.TargetConfigBase` with
    #: ``type: Literal["<name>"]``
    config: type[TargetConfigBase]
    #: the kind records changes rather than mirroring rows (Parquet): no conflict strategy
    #: applies to it, so ``validate`` asks none of a keyless table (the target's own
    #: ``change_log``, known before one is built)
    change_log: bool

    def create(self, pipeline: str, config: Any, state: TargetState) -> Target:
        """The target for one pipeline (``config`` is an instance of :attr:`config`); a
        target that keeps no state of its own puts checkpoints and shadow rows in ``state``.
        Must not connect: :meth:`Target.open` does."""
        ...

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        """Problems that stop the pipeline from writing (unreachable, not writable), each
        naming the fix; ``validate`` prefixes them with the path."""
        ...
