"""The PostgreSQL target: set-wise apply, with checkpoint and shadow in the data transaction."""

from __future__ import annotations

from syncengine.targets.postgres.target import PostgresTarget

__all__ = ["PostgresTarget"]
