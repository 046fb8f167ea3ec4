"""The state tables, defined once for every backend.

SQLite (default, :mod:`syncengine.state.sqlite`) and the Postgres target (tables in the
``_syncengine`` schema of the target database, committed in the data transaction) create the
same tables from this description. Types are written as the portable subset both accept.

``FORMAT_VERSION`` is stored in ``meta``; :data:`MIGRATIONS` upgrades an older store in place.
"""

from __future__ import annotations

from typing import LiteralString

# Column types and index predicates are SQL written in this file, never input: LiteralString
# lets the Postgres target compose them with psycopg's sql.SQL.
FORMAT_VERSION = 5

# table -> (column definitions, primary key). TEXT holds JSON where a structure is stored.
TABLES: dict[str, tuple[list[tuple[str, LiteralString]], list[str]]] = {
    "meta": ([("name", "TEXT NOT NULL"), ("value", "TEXT NOT NULL")], ["name"]),
    # one row per pipeline and source stream (a Postgres slot, a Mongo database stream, a table
    # polled incrementally); position is the source's own order-preserving position string.
    "checkpoints": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("stream", "TEXT NOT NULL"),
            ("position", "TEXT NOT NULL"),
            ("details", "TEXT NOT NULL DEFAULT '{}'"),
            ("version", "INTEGER NOT NULL"),
            ("updated_at", "TEXT NOT NULL"),
        ],
        ["pipeline", "stream"],
    ),
    # snapshot/backfill progress, one row per chunk (key range) of a table
    "chunks": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("chunk", "INTEGER NOT NULL"),
            ("lower_bound", "TEXT"),
            ("upper_bound", "TEXT"),
            ("status", "TEXT NOT NULL"),
            ("row_count", "INTEGER NOT NULL DEFAULT 0"),
            ("updated_at", "TEXT NOT NULL"),
        ],
        ["pipeline", "source_table", "chunk"],
    ),
    # what this pipeline last wrote per target key: the row hash, and the row itself (base for
    # three-way merges)
    "shadow": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("target_table", "TEXT NOT NULL"),
            ("row_key", "TEXT NOT NULL"),
            ("row_hash", "TEXT NOT NULL"),
            ("base", "TEXT"),
            # source position of the change the row reflects: a replayed older change is
            # dropped (the per-key fence); an empty row_hash is a tombstone (key deleted)
            ("position", "TEXT"),
        ],
        ["pipeline", "target_table", "row_key"],
    ),
    "conflicts": (
        [
            ("id", "INTEGER NOT NULL"),
            ("pipeline", "TEXT NOT NULL"),
            ("target_table", "TEXT NOT NULL"),
            ("row_key", "TEXT NOT NULL"),
            ("base", "TEXT"),
            ("local", "TEXT"),
            ("remote", "TEXT"),
            ("delta", "TEXT"),
            ("status", "TEXT NOT NULL"),
            ("created_at", "TEXT NOT NULL"),
            ("resolved_at", "TEXT"),
            ("resolution", "TEXT"),
            ("decided_by", "TEXT"),
        ],
        ["id"],
    ),
    # later changes to a key with a pending conflict wait here, in order
    "held_changes": (
        [
            ("id", "INTEGER NOT NULL"),
            ("conflict_id", "INTEGER NOT NULL"),
            ("pipeline", "TEXT NOT NULL"),
            ("target_table", "TEXT NOT NULL"),
            ("row_key", "TEXT NOT NULL"),
            ("change", "TEXT NOT NULL"),
        ],
        ["id"],
    ),
    # tables whose changes are held (``pause``): status pausing (asked, not yet seen by the
    # process that applies), paused, resuming (asked to release); held_through is the position
    # of the last change held, the fence against holding a replayed change twice
    "paused_tables": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("status", "TEXT NOT NULL"),
            ("held_through", "TEXT"),
            ("held_rows", "INTEGER NOT NULL DEFAULT 0"),
            ("requested_at", "TEXT NOT NULL"),
            ("paused_at", "TEXT"),
        ],
        ["pipeline", "source_table"],
    ),
    # per source table running counters for ``status --tables``, one transaction per group
    "table_stats": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("rows_applied", "INTEGER NOT NULL DEFAULT 0"),
            ("last_change_at", "TEXT"),
            ("last_lag_seconds", "REAL"),
            ("updated_at", "TEXT NOT NULL"),
        ],
        ["pipeline", "source_table"],
    ),
    "dead_letters": (
        [
            ("id", "INTEGER NOT NULL"),
            ("pipeline", "TEXT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("stage", "TEXT NOT NULL"),
            ("reason", "TEXT NOT NULL"),
            ("payload", "TEXT NOT NULL"),
            ("position", "TEXT"),
            ("created_at", "TEXT NOT NULL"),
            ("replayed_at", "TEXT"),
            # position of a later change of the letter's key: replaying it would move the
            # row back in time (``deadletters replay`` skips it unless forced)
            ("superseded", "TEXT"),
        ],
        ["id"],
    ),
    # who decided what, for every conflict resolution
    "audit": (
        [
            ("id", "INTEGER NOT NULL"),
            ("pipeline", "TEXT NOT NULL"),
            ("target_table", "TEXT NOT NULL"),
            ("row_key", "TEXT NOT NULL"),
            ("strategy", "TEXT NOT NULL"),
            ("outcome", "TEXT NOT NULL"),
            ("decided_by", "TEXT NOT NULL"),
            ("created_at", "TEXT NOT NULL"),
        ],
        ["id"],
    ),
    # the lag the daemon saw, a sample per pipeline every ``console.history_interval`` (10 s)
    # for the console's chart: source_table '' is the pipeline as a whole, a table's own rows
    # (applied since the previous sample, its last lag) only when it applied something; kept
    # ``console.history_keep`` (24 h), pruned as it is written (state/sqlite/lag_history.py)
    "lag_history": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("at_ms", "BIGINT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("lag_seconds", "REAL"),
            ("lag_bytes", "BIGINT"),
            ("retained_wal_bytes", "BIGINT"),
            ("applied", "BIGINT NOT NULL DEFAULT 0"),
        ],
        ["pipeline", "at_ms", "source_table"],
    ),
    # cluster mode's fencing epoch per pipeline (targets/postgres/epochs.py): bumped by each
    # attempt that takes the pipeline over, checked by every commit in that commit's
    # transaction, so a worker paused past its heartbeat timeout cannot commit after its
    # successor took over; holder names the attempt (worker identity and attempt number)
    "epochs": (
        [
            ("pipeline", "TEXT NOT NULL"),
            ("epoch", "BIGINT NOT NULL"),
            ("holder", "TEXT NOT NULL"),
            ("claimed_at", "TEXT NOT NULL"),
        ],
        ["pipeline"],
    ),
    # per-table operations asked of a running pipeline (resnapshot): the CLI leaves them here
    # for the daemon, never in the user's database
    "table_requests": (
        [
            ("id", "INTEGER NOT NULL"),
            ("pipeline", "TEXT NOT NULL"),
            ("source_table", "TEXT NOT NULL"),
            ("kind", "TEXT NOT NULL"),
            ("where_sql", "TEXT"),
            ("status", "TEXT NOT NULL"),
            ("error", "TEXT"),
            ("created_at", "TEXT NOT NULL"),
            ("updated_at", "TEXT NOT NULL"),
            # 1: the target held none of the table's rows when the snapshot began (no sweep)
            ("target_empty", "INTEGER"),
        ],
        ["id"],
    ),
}

# name -> (table, columns, partial-index condition): created by both backends if missing
INDEXES: dict[str, tuple[str, str, LiteralString]] = {
    # tombstones are purged once the checkpoint has passed them (no replay can reach them)
    "shadow_tombstones": ("shadow", "pipeline, position", "row_hash = ''"),
    # the changes a paused table holds (conflict_id 0, see state/sqlite/pauses.py), in order
    "held_paused": ("held_changes", "pipeline, target_table, id", "conflict_id = 0"),
}

# version -> columns (table, column, type) that upgrade a store from version-1 to version; each
# backend turns them into its own ALTER TABLE. A new table needs no entry: both backends create
# every table of TABLES that is missing (CREATE TABLE IF NOT EXISTS) before migrating.
MIGRATIONS: dict[int, list[tuple[str, str, LiteralString]]] = {
    2: [("shadow", "position", "TEXT")],
    3: [("dead_letters", "superseded", "TEXT")],
    4: [],  # the lag_history table
    5: [("table_requests", "target_empty", "INTEGER")],
}
