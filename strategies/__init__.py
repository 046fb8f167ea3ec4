"""Conflict strategies (installed as ``syncengine.strategies``).

Built-ins: ``remote`` (default), ``local``, ``timestamp``, ``merge``, ``manual``; third parties
add their own through the ``syncengine.strategies`` entry point group (docs/conflicts.md).
"""

from syncengine.strategies.base import (
    EXISTS,
    ConflictStrategy,
    Decision,
    StrategyContext,
    load_strategy,
)

__all__ = ["EXISTS", "ConflictStrategy", "Decision", "StrategyContext", "load_strategy"]
