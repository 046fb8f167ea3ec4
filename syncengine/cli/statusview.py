"""How ``syncengine status`` prints: one wide table when it fits the terminal, else one block
per pipeline (label and value on a line) so nothing is cut to ``pipel…`` or ``00000…``.
``--json`` does not come here."""

from __future__ import annotations

from typing import Any

#: (label, key in the status dict), in the order shown
FIELDS = [
    ("pipeline", "pipeline"),
    ("checkpoint", "checkpoint"),
    ("lag_bytes", "lag_bytes"),
    ("lag_seconds", "lag_seconds"),
    ("retained_wal_bytes", "retained_wal_bytes"),
    ("rows_applied", "rows_applied"),
    ("pending_conflicts", "pending_conflicts"),
    ("dead_letters", "dead_letters"),
    ("last_error", "last_error"),
]


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _value(info: dict[str, Any], key: str) -> str:
    if key == "last_error":
        return cell(info.get(key) or info.get("error"))
    return cell(info.get(key))


def print_status(infos: list[dict[str, Any]], width: int | None = None) -> None:
    """Print to stdout, ``width`` columns (default: the terminal's, or ``COLUMNS``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width, soft_wrap=False)
    cells = [[_value(info, key) for _, key in FIELDS] for info in infos]
    widths = [max([len(f[0]), *(len(row[i]) for row in cells)]) for i, f in enumerate(FIELDS)]
    if sum(widths) + 3 * len(widths) + 1 <= console.width:  # "│ " + cell + " " per column, "│"
        table = Table(title="syncengine status")
        for label, _ in FIELDS:
            table.add_column(label, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    console.print("syncengine status", style="bold")
    for info in infos:
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for label, key in FIELDS[1:]:
            block.add_row(label, _value(info, key))
        console.print()
        console.print(f"pipeline {info.get('pipeline')}", style="bold underline")
        console.print(block)


#: (label, key) of ``status --tables``
TABLE_FIELDS = [
    ("pipeline", "pipeline"),
    ("table", "table"),
    ("state", "state"),
    ("rows_applied", "rows_applied"),
    ("last_change", "last_change_at"),
    ("lag_s", "lag_seconds"),
    ("held", "held_changes"),
    ("dead_letters", "dead_letters"),
    ("conflicts", "pending_conflicts"),
]


def _table_value(row: dict[str, Any], key: str) -> str:
    if key == "state" and row.get("state") == "snapshotting":
        return f"snapshotting {row.get('chunks_done')}/{row.get('chunks_total')} chunks"
    if key == "last_change_at" and row.get(key):
        return str(row[key])[:19].replace("T", " ")
    return cell(row.get(key))


def print_tables(rows: list[dict[str, Any]], width: int | None = None) -> None:
    """``status --tables``: one line per table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width, soft_wrap=False)
    table = Table(title="syncengine status --tables")
    for label, _ in TABLE_FIELDS:
        table.add_column(label, no_wrap=True)
    for row in rows:
        table.add_row(*[_table_value(row, key) for _, key in TABLE_FIELDS])
    console.print(table)
