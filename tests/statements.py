"""``pg_stat_statements`` as the evidence of what a server ran, per database.

The session cluster preloads the extension with tracking off (``tests/conftest.py``): a test
that reads it turns tracking on for its own database only. With every test's statements
recorded, the whole suite's thousands of one-off statements filled the table and the server
evicted the least-used entries — a chunk's ``COPY`` a test had just run among them.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql


def track_statements(dsn: str) -> None:
    """Record the statements of every later session of this database (the test is skipped on
    a server without the extension preloaded)."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT count(*) FROM pg_stat_statements")
            name = conn.execute("SELECT current_database()").fetchone()[0]
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET pg_stat_statements.track = 'top'").format(
                    sql.Identifier(name)
                )
            )
    except psycopg.Error as exc:  # an external server without the preload or the privilege
        pytest.skip(f"pg_stat_statements is not available: {exc}")
