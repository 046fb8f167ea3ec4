"""Two-way ``manual``: a conflicting key waits on both sides until a person resolves it, and
the resolution is written to both.

*Parking.* The direction that meets the conflict parks it, as one-way ``manual`` does. The
other direction's resolver sees that pending conflict too (``ConflictResolver.twin``) and holds
its own changes of the key behind it: neither side applies anything of that key meanwhile.

*Resolving* (``conflicts resolve``, the console). The chosen row (either side's, the merge, or
a person's own) is written to BOTH sides, followed by the changes held behind the conflict on
either side since it was parked, in commit-time order, so both sides end with the same row and
each direction's shadow with it (at a position of its own stream). Each write carries its
direction's manual origin (:func:`~syncengine.config.twoway.manual_origin_name`; a Mongo side
marks its transaction with it; the directions'
own origins are held by the running daemon), which the other direction's reader takes as an
echo: the resolution does not come back as a change, nothing ping-pongs.

A change a side made that its direction has not read yet would be overwritten on that side and
then carried to the other: before writing, each side's row must still be the last one its
direction saw (the last held change of it, or the conflict's row). If not, the resolution waits
for the daemon to hold that change, and gives up with "try again" when it does not come.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from syncengine.changes import META_COLUMNS, UNSENT_PREFIX
from syncengine.config.twoway import manual_origin_name, origin_field, sibling_name, twin_table
from syncengine.conflicts import queue
from syncengine.conflicts.manual import (
    Choice,
    Resolution,
    chosen_row,
    pending_conflict,
    release_write,
)
from syncengine.conflicts.rows import canonical, decode_rows, encode_rows, polars_schema
from syncengine.errors import UsageError
from syncengine.state import Conflict
from syncengine.targets.base import TableSpec, Target

if TYPE_CHECKING:
    from syncengine.config.models import MappingConfig, PipelineConfig
    from syncengine.state.protocols import StateStore

#: how long a resolution waits for a side's unread change to be held (attempts × pause)
_ATTEMPTS, _PAUSE = 20, 0.5


async def resolve_two_way(
    pipelines: Mapping[str, PipelineConfig],
    state: StateStore,
    conflict: Conflict,
    take: Choice,
    decided_by: str,
    merged_json: str | None = None,
) -> Resolution:
    """Write a person's choice for a two-way ``manual`` conflict to both sides and release what
    both directions held behind it (see the module docstring)."""
    from syncengine.targets import make_target

    assert conflict.id is not None
    conflict = pending_conflict(state, conflict.id)
    row = chosen_row(conflict, take, merged_json)
    mine, other = conflict.pipeline, sibling_name(conflict.pipeline)
    twin = replace(conflict, pipeline=other, table=twin_table(_mapping(pipelines[mine], conflict)))
    targets = [
        make_target(name, pipelines[name].target.model_copy(
            update={origin_field(pipelines[name].target.type): manual_origin_name(name)}), state,
            beside_run=True)
        for name in (mine, other)
    ]  # fmt: skip
    for target in targets:
        await target.open()
    try:
        return await _resolve(state, targets, (conflict, twin), row, take, decided_by)
    finally:
        for target in targets:
            await target.close()


def _mapping(spec: PipelineConfig, conflict: Conflict) -> MappingConfig:
    for mapping in spec.mappings_for_sources():
        if mapping.target_name == conflict.table:
            return mapping
    raise UsageError(
        f"conflict {conflict.id}: table {conflict.table} is not mapped by pipeline "
        f"{conflict.pipeline} any more"
    )


async def _resolve(
    state: StateStore,
    targets: Sequence[Target],
    conflicts: tuple[Conflict, Conflict],
    row: str | None,
    take: str,
    decided_by: str,
) -> Resolution:
    conflict, twin = conflicts
    assert conflict.id is not None
    sides = list(zip(targets, conflicts, strict=True))
    specs = [await target.ensure_table(queue.spec_of(parked)) for target, parked in sides]
    written = False
    for _ in range(_ATTEMPTS):
        mine = state.held_changes(conflict.id, conflict.pipeline)
        other = state.held_changes(conflict.id, twin.pipeline)
        # each side's row as its direction last saw it: the parking direction reads the source
        # (conflict.remote, then its held changes), the other one the parking one's target
        expected = [_last(other, conflict.local), _last(mine, conflict.remote)]
        if not written and not all([
            await _unchanged(t, spec, conflict.key, seen)
            for t, spec, seen in zip(targets, specs, expected, strict=True)
        ]):  # fmt: skip
            await asyncio.sleep(_PAUSE)  # a change of that side not yet held: wait for it
            continue
        later = _in_commit_order([*mine, *_after(other, conflict.local)])
        positions = [
            max([queue.position_of(conflict) or "", *_positions(mine)]),
            max(_positions(other), default=await _shadow_position(targets[1], twin)),
        ]
        for (target, parked), spec, position in zip(sides, specs, positions, strict=True):
            texts = [_at(text, position) for text in later]
            await target.apply([release_write(spec, parked, row, texts, position)], None)
        written = True  # a change held meanwhile is written again on top (idempotent)
        with state.transaction() as db:
            now = (
                state.held_changes(conflict.id, conflict.pipeline),
                state.held_changes(conflict.id, twin.pipeline),
            )
            if now != (mine, other):
                continue  # a direction held another change meanwhile: write that too
            state.mark_resolved(db, conflict.id, take, decided_by)
            for parked in conflicts:
                audit = [(conflict.key, "manual", f"take_{take}", decided_by)]
                state.write_audit(db, parked.pipeline, parked.table, audit)
        return Resolution(conflict.id, take, row, len(later))
    raise UsageError(
        f"conflict {conflict.id}: the key {conflict.key} is still changing on a side whose "
        "direction has not read the change yet (is the daemon running?); try again"
    )


def _last(held: Sequence[str], row: str | None) -> dict[str, Any] | None:
    """The row a side holds after its direction's held changes (``row`` without any): the last
    one's sent columns, or None for a delete."""
    if not held:
        return None if row is None else dict(json.loads(row))
    return _image(held[-1])


def _image(change: str) -> dict[str, Any] | None:
    doc = json.loads(change)
    if doc.get("_op") == "d":
        return None
    unsent = {k[len(UNSENT_PREFIX) :] for k, v in doc.items() if k.startswith(UNSENT_PREFIX) and v}
    return {
        k: v
        for k, v in doc.items()
        if k not in META_COLUMNS and not k.startswith(UNSENT_PREFIX) and k not in unsent
    }


def _after(held: Sequence[str], row: str | None) -> list[str]:
    """The other direction's held changes made after the parked conflict's row of its side:
    those up to the last one whose row is that one were part of the conflict itself."""
    wanted = None if row is None else dict(json.loads(row))
    seen = [i for i, change in enumerate(held) if _image(change) == _sent(wanted, change)]
    return list(held[seen[-1] + 1 :]) if seen else list(held)


def _sent(row: dict[str, Any] | None, change: str) -> dict[str, Any] | None:
    """``row`` cut to the columns ``change`` sent (what :func:`_image` keeps of it)."""
    image = _image(change)
    if row is None or image is None:
        return row
    return {k: v for k, v in row.items() if k in image}


def _in_commit_order(changes: Sequence[str]) -> list[str]:
    """Both directions' held changes as one history, by commit time (stable where equal)."""
    return sorted(changes, key=lambda text: json.loads(text).get("_ts") or "")


def _positions(held: Sequence[str]) -> list[str]:
    return [p for p in (json.loads(text).get("_pos") for text in held) if p]


def _at(change: str, position: str) -> str:
    """A held change at ``position`` of the stream whose shadow it goes to: the other side's
    positions do not compare with this side's (the position fence)."""
    return json.dumps({**json.loads(change), "_pos": position})


async def _shadow_position(target: Target, twin: Conflict) -> str:
    """Where the other direction's shadow of the key stands (its position is kept)."""
    found = await target.read_shadow(twin.table, [twin.key])
    positions = [p for p in found.column("position").to_pylist() if p] if found.num_rows else []
    return max(positions, default="")


async def _unchanged(
    target: Target, spec: TableSpec, key: str, expected: dict[str, Any] | None
) -> bool:
    """Whether the side's row is ``expected`` (its sent columns; None: no row)."""
    schema = polars_schema(spec)
    keys = decode_rows([key], {k: schema[k] for k in spec.key})
    found = canonical(await target.read_rows(spec, keys.to_arrow()), spec)
    if expected is None or not found.height:
        return expected is None and not found.height
    columns = [c for c in spec.schema.names if c in expected]
    wanted = decode_rows([json.dumps(expected)], {c: schema[c] for c in columns})
    return bool(encode_rows(found.head(1), columns)[0] == encode_rows(wanted, columns)[0])
