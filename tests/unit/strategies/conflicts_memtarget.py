"""An in-memory Target for unit tests of the conflict step (no server).

It follows the apply semantics of syncengine.changes row by row in plain Python, which is fine
for a test double; the real targets are exercised by tests/integration/conflicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from syncengine.changes import UNSENT_PREFIX, is_data_column
from syncengine.conflicts.rows import canonical, row_keys
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite


class MemoryTarget:
    keeps_state = False
    change_log = False

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.shadow: dict[str, dict[str, tuple[str | None, str | None, str | None]]] = {}
        self.checkpoints: dict[str, str] = {}
        self.applied: list[TableWrite] = []

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        self.rows.setdefault(spec.name, {})
        return spec

    def _keys(self, spec: TableSpec, frame: pl.DataFrame) -> list[str]:
        return row_keys(canonical(frame.select(spec.key), _key_spec(spec)), spec.key).to_list()

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        frame = pl.from_arrow(keys)
        table = self.rows.get(spec.name, {})
        found = [table[k] for k in self._keys(spec, frame) if k in table]
        return pa.Table.from_pylist(found, schema=spec.schema)

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        shadow = self.shadow.get(table, {})
        hits = [(k, *shadow[k]) for k in row_keys if k in shadow]
        return pa.table(
            {
                "row_key": pa.array([h[0] for h in hits], pa.string()),
                "row_hash": pa.array([h[1] for h in hits], pa.string()),
                "base": pa.array([h[2] for h in hits], pa.string()),
                "position": pa.array([h[3] for h in hits], pa.string()),
            }
        )

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        result = ApplyResult()
        for write in writes:
            self.applied.append(write)
            table = self.rows.setdefault(write.spec.name, {})
            frame = write.batch.to_polars()
            data = [c for c in frame.columns if is_data_column(c)]
            keys = self._keys(write.spec, frame) if frame.height else []
            for key, row in zip(keys, frame.iter_rows(named=True), strict=True):
                op = row["_op"]
                if op == "t":
                    table.clear()
                elif op == "d":
                    table.pop(key, None)
                    result.deleted += 1
                else:
                    sent = {c: row[c] for c in data if not row.get(UNSENT_PREFIX + c)}
                    old = table.get(key) if op == "u" else None
                    table[key] = {**(old or {}), **sent}
                    result.upserted += 1
            shadow = self.shadow.setdefault(write.spec.name, {})
            if write.shadow.upserts is not None:
                for r in write.shadow.upserts.to_pylist():
                    shadow[r["row_key"]] = (r["row_hash"], r["base"], r.get("position"))
            for key in write.shadow.deletes:
                shadow.pop(key, None)
        if checkpoint is not None:
            self.checkpoints[checkpoint.stream] = checkpoint.position
        return result

    async def get_checkpoint(self, stream: str) -> str | None:
        return self.checkpoints.get(stream)

    # -- hand edits (what a person does at the target) ---------------------------------------

    def edit(self, table: str, key: str, **values: Any) -> None:
        self.rows[table][key].update(values)

    def put(self, table: str, key: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, {})[key] = dict(row)

    def remove(self, table: str, key: str) -> None:
        self.rows[table].pop(key)


def _key_spec(spec: TableSpec) -> TableSpec:
    return TableSpec(spec.name, spec.key, pa.schema([spec.schema.field(k) for k in spec.key]))
