"""Resolving a parked conflict by hand, and releasing the changes that waited behind it.

:func:`resolve_conflict` applies the chosen row and then the held changes (in source order,
compacted to their net effect) to the target in one ``apply`` with the shadow update, then marks
the conflict resolved and writes the audit row. If the daemon holds another change for the key
meanwhile, the held list is read again and re-applied before the conflict is closed (applying is
idempotent), so nothing that waited is dropped. A crash before the conflict is marked leaves it
pending: resolving it again applies the same rows again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

from syncengine.changes import OP_DELETE, OP_UPDATE, ChangeBatch
from syncengine.config.models import ConflictsConfig
from syncengine.conflicts import queue
from syncengine.conflicts.detect import after_image, json_of
from syncengine.conflicts.rows import (
    EXISTS,
    canonical,
    carried_columns,
    decode_rows,
    json_columns,
    polars_schema,
    row_hashes,
)
from syncengine.conflicts.widen import decode_exact, text_read, widen
from syncengine.errors import UsageError
from syncengine.state import Conflict
from syncengine.state.protocols import ConflictQueue
from syncengine.strategies.base import StrategyContext
from syncengine.strategies.merge import MergeStrategy
from syncengine.targets.base import ShadowUpdate, TableSpec, TableWrite, Target

if TYPE_CHECKING:
    from syncengine.config.base import TargetConfigBase
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import StateStore


Choice = Literal["local", "remote", "merged"]


@dataclass(frozen=True)
class Resolution:
    conflict_id: int
    take: str
    row: str | None
    """The chosen row as JSON (``None``: the key is deleted)."""
    released: int
    """Held changes applied after it."""


def pending_conflict(state: ConflictQueue, conflict_id: int) -> Conflict:
    conflict = state.get_conflict(conflict_id)
    if conflict is None:
        raise UsageError(f"no conflict with id {conflict_id}", hint="see `conflicts list`")
    if conflict.status != "pending":
        raise UsageError(
            f"conflict {conflict_id} is already {conflict.status} "
            f"({conflict.resolution} by {conflict.decided_by})"
        )
    return conflict


def chosen_row(
    conflict: Conflict, take: Choice, merged_json: str | None = None, tie: str = "remote"
) -> str | None:
    """The row a person picked, as JSON: one side, their own merged row, or the merge of both."""
    if take == "local":
        return conflict.local
    if take == "remote":
        return conflict.remote
    if merged_json is not None:
        try:
            doc = json.loads(merged_json)
        except ValueError as exc:
            raise UsageError(f"--merged-json is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError("--merged-json must be a JSON object (the whole row)")
        key = json.loads(conflict.key)
        return json.dumps({**doc, **key})
    return auto_merge(conflict, tie)


def auto_merge(conflict: Conflict, tie: str = "remote") -> str | None:
    """The ``merge`` strategy's answer for this conflict."""
    spec = queue.spec_of(conflict)
    base, local, remote = (
        _side(text, spec) for text in (conflict.base, conflict.local, conflict.remote)
    )
    ctx = StrategyContext(
        ConflictsConfig.model_validate({"strategy": "merge", "tie": tie}),
        spec.key,
        tuple(spec.schema.names),
        json_columns(spec.schema),
        spec.name,
    )
    decision = MergeStrategy().decide(base, local, remote, ctx)
    rows = decision.rows
    return json_of(rows, spec.schema.names)[0] if rows[EXISTS][0] else None


def _side(text: str | None, spec: TableSpec) -> pl.DataFrame:
    frame = decode_rows([text], polars_schema(spec))
    return frame.with_columns(pl.Series(EXISTS, [text is not None]))


async def resolve_conflict(
    target: Target,
    state: ConflictQueue,
    conflict_id: int,
    take: Choice,
    decided_by: str,
    merged_json: str | None = None,
) -> Resolution:
    """Apply a person's choice for a pending conflict and release its held changes."""
    conflict = pending_conflict(state, conflict_id)
    row = chosen_row(conflict, take, merged_json)
    spec = await target.ensure_table(queue.spec_of(conflict))
    for _ in range(10):
        held = state.held_changes(conflict_id)
        await target.apply([release_write(spec, conflict, row, held)], None)
        with state.transaction() as db:
            if state.held_changes(conflict_id) != held:
                continue  # the daemon held another change meanwhile: apply that too
            state.mark_resolved(db, conflict_id, take, decided_by)
            outcome = f"take_{take}"
            state.write_audit(
                db,
                conflict.pipeline,
                conflict.table,
                [(conflict.key, "manual", outcome, decided_by)],
            )
        return Resolution(conflict_id, take, row, len(held))
    raise UsageError(f"conflict {conflict_id}: changes keep arriving for its key; try again")


async def resolve_in_config(
    pipelines: Mapping[str, PipelineConfig],
    state: StateStore,
    conflict: Conflict,
    take: Choice,
    decided_by: str,
    merged_json: str | None = None,
) -> Resolution:
    """What ``conflicts resolve`` and the console run: :func:`resolve_with_target` with the
    conflict's pipeline's target; a direction of a two-way pipeline resolves on both sides
    (:mod:`syncengine.conflicts.twoway_manual`)."""
    from syncengine.config.twoway import sibling_name

    if sibling_name(conflict.pipeline) in pipelines:
        from syncengine.conflicts.twoway_manual import resolve_two_way

        return await resolve_two_way(pipelines, state, conflict, take, decided_by, merged_json)
    target = pipelines[conflict.pipeline].target
    return await resolve_with_target(target, state, conflict, take, decided_by, merged_json)


async def resolve_with_target(
    target_config: TargetConfigBase,
    state: StateStore,
    conflict: Conflict,
    take: Choice,
    decided_by: str,
    merged_json: str | None = None,
) -> Resolution:
    """Open the pipeline's target, :func:`resolve_conflict`, close it: what ``conflicts
    resolve`` and the console's resolve buttons both run."""
    from syncengine.targets import make_target

    target = make_target(conflict.pipeline, target_config, state, beside_run=True)
    await target.open()
    try:
        assert conflict.id is not None
        return await resolve_conflict(
            target, state, conflict.id, take, decided_by, merged_json=merged_json
        )
    finally:
        await target.close()


def release_write(
    spec: TableSpec,
    conflict: Conflict,
    row: str | None,
    held: Sequence[str],
    position: str | None = None,
) -> TableWrite:
    """The chosen row as a full-row change, then the held changes, compacted; with the shadow
    of the result (the target and the pipeline agree on the key again). ``position``: the
    chosen row's, instead of the conflict's (two-way: the other direction's stream)."""
    position = position if position is not None else queue.position_of(conflict) or ""
    key = json.loads(conflict.key)
    stored = pl.Series([row if row is not None else json.dumps(key)], dtype=pl.String)
    spec, chosen = decode_exact(stored, spec)
    if held:  # a column either side holds as text (a value with no native form): text in both
        held_spec, later = queue.decode_changes(held, spec)
        spec, chosen = widen(spec, chosen, text_read(spec, held_spec.schema.empty_table()))
    first = chosen.with_columns(
        pl.lit(OP_UPDATE if row is not None else OP_DELETE).alias("_op"),
        pl.lit(position).alias("_pos"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("_ts"),
        pl.lit(None, dtype=pl.Int64).alias("_txid"),
    )
    frames = [first, later] if held else [first]
    changes = pl.concat(frames, how="diagonal_relaxed")
    unsent = [c for c in changes.columns if c.startswith("_unsent.")]
    changes = changes.with_columns(pl.col(c).fill_null(False) for c in unsent)
    batch = ChangeBatch.from_polars(changes, spec.name, spec.key).compact()
    net = normalize_columns(batch.to_polars(), spec)
    fill = chosen.with_columns(pl.Series(EXISTS, [row is not None]))
    after = after_image(net, canonical(net, spec), fill, spec.schema.names)
    texts = json_of(after, spec.schema.names)
    exists = after[EXISTS][0]
    upserts = pl.DataFrame(
        {
            "row_key": [conflict.key],
            # deleted: a tombstone
            "row_hash": row_hashes(after, spec.schema.names, carried_columns(spec.schema))
            if exists
            else [None],
            "base": texts if exists else [None],
            "position": net["_pos"],
        },
        schema=dict.fromkeys(("row_key", "row_hash", "base", "position"), pl.String),
    )
    return TableWrite(spec, batch.replace(net), ShadowUpdate(upserts=upserts.to_arrow()))


def normalize_columns(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Data columns cast to the spec (meta and unsent columns as they are)."""
    data = canonical(frame.select([c for c in spec.schema.names if c in frame.columns]), spec)
    rest = frame.select([c for c in frame.columns if c not in spec.schema.names])
    return pl.concat([data, rest], how="horizontal")
