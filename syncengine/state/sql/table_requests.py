"""Per-table requests in the state store: the CLI's ``resnapshot`` leaves one, the daemon that
holds the pipeline picks it up between groups (:mod:`syncengine.runtime.tableops`). Also the
source tables ``apply`` last gave a cluster stream (``meta`` ``applied_tables:<pipeline>``):
a table the next ``apply`` adds gets a request of its own (:mod:`syncengine.cluster.added`).
And the tables a pipeline's stream captures (``captured_tables:<pipeline>``,
:mod:`syncengine.runtime.captured`)."""

from __future__ import annotations

from typing import Any

from syncengine.state.base import TableRequest
from syncengine.state.sql.base import StateSQL, now

#: a request still to be carried out (a ``running`` one resumes after a crash)
OPEN = ("pending", "running")


class SQLTableRequests(StateSQL):
    def request_table(self, pipeline: str, table: str, kind: str, where: str | None) -> int:
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM table_requests WHERE pipeline=? AND source_table=? AND kind=? "
                "AND status IN (?, ?) AND where_sql IS NOT DISTINCT FROM ?",
                (pipeline, table, kind, *OPEN, where),
            ).fetchone()
            if row is not None:
                return int(row[0])
            stamp = now()
            cur = db.execute(
                "INSERT INTO table_requests(id, pipeline, source_table, kind, where_sql, status, "
                "created_at, updated_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM "
                "table_requests), ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
                (pipeline, table, kind, where, stamp, stamp),
            )
            return int(cur.fetchone()[0])

    def table_requests(self, pipeline: str, open_only: bool = True) -> list[TableRequest]:
        sql = (
            "SELECT id, pipeline, source_table, kind, where_sql, status, error, created_at, "
            "updated_at, target_empty FROM table_requests WHERE pipeline=?"
        )
        if open_only:
            sql += " AND status IN ('pending', 'running')"
        rows = self.db.execute(sql + " ORDER BY id", (pipeline,))
        return [_request(row) for row in rows]

    def update_table_request(
        self,
        request_id: int,
        status: str,
        error: str | None = None,
        target_empty: bool | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE table_requests SET status=?, error=?, updated_at=?, "
                "target_empty=coalesce(?, target_empty) WHERE id=?",
                (status, error, now(), _flag(target_empty), request_id),
            )

    def applied_tables(self, pipeline: str) -> list[str] | None:
        tables = self._meta(f"applied_tables:{pipeline}")
        return None if tables is None else [str(t) for t in tables]

    def set_applied_tables(self, pipeline: str, tables: list[str]) -> None:
        self._put_meta(f"applied_tables:{pipeline}", sorted(tables))

    def captured_tables(self, pipeline: str) -> dict[str, str | None] | None:
        tables = self._meta(f"captured_tables:{pipeline}")
        return None if tables is None else dict(tables)

    def set_captured_tables(self, pipeline: str, tables: dict[str, str | None]) -> None:
        self._put_meta(f"captured_tables:{pipeline}", dict(sorted(tables.items())))


def _request(row: tuple[Any, ...]) -> TableRequest:
    """A ``table_requests`` row as selected above; ``target_empty`` (0/1/NULL) as a bool."""
    id_, pipeline, table, kind, where, status, error, created_at, updated_at, empty = row
    return TableRequest(
        id_, pipeline, table, kind, where, status, error, created_at, updated_at,
        target_empty=None if empty is None else bool(empty),
    )  # fmt: skip


def _flag(value: bool | None) -> int | None:
    """A bool as the 0/1 the INTEGER column holds (Postgres takes no bool for it)."""
    return None if value is None else int(value)
