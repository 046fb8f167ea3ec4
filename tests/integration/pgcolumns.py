"""What a Postgres target stored in one column: its type and each row's value as text."""

from __future__ import annotations

import psycopg
from psycopg import sql


def stored_column(dsn: str, table: str, column: str, key: str) -> tuple[str, dict[int, str]]:
    """``column``'s ``information_schema`` data type and its values as text, by ``key``."""
    with psycopg.connect(dsn) as conn:
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = %s",
            (table, column),
        ).fetchone()
        rows = conn.execute(
            sql.SQL("SELECT {}, {}::text FROM {} ORDER BY 1").format(
                sql.Identifier(key), sql.Identifier(column), sql.Identifier(table)
            )
        ).fetchall()
    assert kind is not None, f"no column {table}.{column}"
    return kind[0], dict(rows)
