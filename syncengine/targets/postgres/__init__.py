"""The PostgreSQL target: set-wise apply, with checkpoint and shadow in the data transaction.

:mod:`.factory` registers the kind; :mod:`.target` is the client. ``PostgresTarget`` is
imported on first use, so loading the factory (every config load does) stays free of psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.lazy import lazy_exports

if TYPE_CHECKING:
    from syncengine.targets.postgres.target import PostgresTarget

__all__ = ["PostgresTarget"]

__getattr__ = lazy_exports(__name__, {"PostgresTarget": "syncengine.targets.postgres.target"})
