"""Backfill progress: a rich progress bar per table on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class BackfillProgress:
    """``advance(table, rows)`` is called by the runner after each committed batch."""

    def __init__(self, estimates: dict[str, int | None], plain: bool | None = None) -> None:
        self.estimates = estimates
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self.started = time.monotonic()
        self.rows: dict[str, int] = {}
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> BackfillProgress:
        if not self.plain:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()
        for table, rows in self.rows.items():
            click.echo(f"{table}: {rows} rows copied", err=True)

    def advance(self, table: str, rows: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + rows
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.rows[table] / elapsed
        if self._progress:
            if table not in self._tasks:
                self._tasks[table] = self._progress.add_task(
                    table, total=self.estimates.get(table), rate="0"
                )
            self._progress.update(self._tasks[table], advance=rows, rate=f"{rate:,.0f}")
            return
        now = time.monotonic()
        if now - self._last_line >= 1.0:
            self._last_line = now
            total = self.estimates.get(table)
            eta = ""
            if total and rate > 0 and total > self.rows[table]:
                eta = f", ETA {(total - self.rows[table]) / rate:,.0f}s"
            of = f"/{total}" if total else ""
            click.echo(f"{table}: {self.rows[table]}{of} rows, {rate:,.0f} rows/s{eta}", err=True)
