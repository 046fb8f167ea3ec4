"""The PostgreSQL target: set-wise apply, with checkpoint and shadow in the data transaction.

:mod:`.factory` registers the kind; :mod:`.target` is the client. ``PostgresTarget`` is
imported on first use, so loading the factory (every config load does) stays free of psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncengine.targets.postgres.target import PostgresTarget

__all__ = ["PostgresTarget"]


def __getattr__(name: str) -> Any:
    if name == "PostgresTarget":
        from syncengine.targets.postgres.target import PostgresTarget

        return PostgresTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
