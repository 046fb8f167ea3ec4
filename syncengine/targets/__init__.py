"""Targets: where mapped, compacted, conflict-resolved batches are applied.

One folder per kind (``postgres/``, ``mongo/``, ``parquet/``), each with its config model,
its factory (:mod:`syncengine.targets.factory`) and its client. :func:`make_target` builds one
from its config through the ``syncengine.targets`` registry, so a third-party target plugs in
the same way as the built-ins. Only the chosen target's module (and driver) is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncengine.state.protocols import TargetState
    from syncengine.targets.base import Target


def make_target(
    pipeline: str, config: Any, state: TargetState, *, beside_run: bool = False
) -> Target:
    """The target for ``config`` (a ``TargetConfig``), storing fallback state in ``state``.

    ``beside_run``: opened next to the pipeline's own run, for a one-off write (a conflict
    resolution): it leaves that run's server sessions alone, which a target that applies
    otherwise takes for a killed earlier run's (``ends_earlier_runs``, the Mongo target)."""
    from syncengine.plugins import target_factory

    target = target_factory(config.type).create(pipeline, config, state)
    if beside_run and hasattr(target, "ends_earlier_runs"):
        target.ends_earlier_runs = False
    return target
