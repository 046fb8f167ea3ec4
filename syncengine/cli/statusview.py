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
    ("lag_last_hour", "lag_last_hour"),
    ("retained_wal_bytes", "retained_wal_bytes"),
    ("rows_applied", "rows_applied"),
    ("pending_conflicts", "pending_conflicts"),
    ("dead_letters", "dead_letters"),
    ("last_error", "last_error"),
]
#: shown when some pipeline has them: a source's warning (a slot retaining too much WAL, or
#: invalidated) and a resync under way (syncengine/runtime/resync.py)
NOTICE_FIELDS = [("warning", "warning"), ("resync", "resync")]
#: cluster mode adds its stream workflow's state (syncengine/cluster/clusterstatus.py)
CLUSTER_FIELDS = [
    ("workflow", "cluster_state"),
    ("worker", "cluster_worker"),
    ("attempt", "cluster_attempt"),
    ("epoch", "cluster_epoch"),
    ("cluster_error", "cluster_error"),
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
    if key == "lag_last_hour":
        return _trend(info.get(key))
    return cell(info.get(key))


def _trend(trend: dict[str, Any] | None) -> str:
    """``2.0→0.3s max 4.0`` (seconds of lag at the first and last stored sample of the hour)."""
    if not trend or trend.get("last_seconds") is None:
        return "-"
    first, last, peak = (cell(trend[k]) for k in ("first_seconds", "last_seconds", "max_seconds"))
    return f"{first}→{last}s max {peak}"


def print_status(infos: list[dict[str, Any]], width: int | None = None) -> None:
    """Print to stdout, ``width`` columns (default: the terminal's, or ``COLUMNS``)."""
    fields = FIELDS + [f for f in NOTICE_FIELDS if any(i.get(f[1]) for i in infos)]
    fields += CLUSTER_FIELDS if any("cluster_state" in i for i in infos) else []
    cells = [[_value(info, key) for _, key in fields] for info in infos]
    headings = [f"pipeline {info.get('pipeline')}" for info in infos]
    _print("syncengine status", [label for label, _ in fields], cells, headings, 1, width)


def _print(
    title: str,
    labels: list[str],
    cells: list[list[str]],
    headings: list[str],
    skip: int,
    width: int | None,
) -> None:
    """One wide table when it fits, else a block per row headed ``headings[i]`` (its first
    ``skip`` cells are in the heading)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width, soft_wrap=False)
    widths = [max([len(label), *(len(row[i]) for row in cells)]) for i, label in enumerate(labels)]
    if sum(widths) + 3 * len(widths) + 1 <= console.width:  # "│ " + cell + " " per column, "│"
        table = Table(title=title)
        for label in labels:
            table.add_column(label, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    console.print(title, style="bold")
    for heading, row in zip(headings, cells, strict=True):
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for label, value in zip(labels[skip:], row[skip:], strict=True):
            block.add_row(label, value)
        console.print()
        console.print(heading, style="bold underline")
        console.print(block)


#: (label, key) of ``status --tables``
TABLE_FIELDS = [
    ("pipeline", "pipeline"),
    ("table", "table"),
    ("state", "state"),
    ("applied", "rows_applied"),
    ("last_change", "last_change_at"),
    ("lag_s", "lag_seconds"),
    ("held", "held_changes"),
    ("dead", "dead_letters"),
    ("conflicts", "pending_conflicts"),
]


def _table_value(row: dict[str, Any], key: str) -> str:
    if key == "state" and row.get("state") == "snapshotting":
        return f"snapshotting {row.get('chunks_done')}/{row.get('chunks_total')} chunks"
    if key == "last_change_at" and row.get(key):
        return str(row[key])[:19].replace("T", " ")
    return cell(row.get(key))


def print_tables(rows: list[dict[str, Any]], width: int | None = None) -> None:
    """``status --tables``: one line per table (a block per table when that does not fit)."""
    cells = [[_table_value(row, key) for _, key in TABLE_FIELDS] for row in rows]
    headings = [f"{row.get('pipeline')} {row.get('table')}" for row in rows]
    labels = [label for label, _ in TABLE_FIELDS]
    _print("syncengine status --tables", labels, cells, headings, 2, width)
