"""The pipeline step between mapping and target apply: detect, decide, queue, write.

``ConflictResolver.resolve(spec, batch)`` turns one compacted, mapped batch into the
:class:`TableWrite` the runtime applies (data + shadow rows, committed with the checkpoint):

1. changes to keys with a pending manual conflict are *held* (queued behind it, in order);
2. the rest are classified (:mod:`syncengine.conflicts.detect`): echoes are skipped, clean
   changes pass through, conflicts go to the table's strategy;
3. the strategy's decision becomes writes: a row equal to the target now is not written, a row
   equal to the incoming change passes through as sent, any other row is written in full;
   parked rows are written to the queue, not the target;
4. park, hold and audit rows commit to the state store *before* the data (see
   :mod:`syncengine.conflicts.queue` for why that is crash-safe).

The shadow records, for every key written or decided, the **source's version** of the row (the
incoming change applied to the last source version), not necessarily what the target holds: after
``local`` or ``merge`` kept target edits, the target still differs from the shadow, so the next
source change to that key is again a conflict and the edits are not silently overwritten by a
full-row image that never saw them. Parked and held keys keep their shadow.

Each shadow row also carries the position of the change it reflects, and a deleted key keeps a
tombstone (null hash, the delete's position), so with ``fence`` (sources whose positions sort)
a replayed older change is recognised as stale and dropped: at-least-once delivery, applied
exactly once per key and never backwards in time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from syncengine.changes import (
    BEFORE_PREFIX,
    META_COLUMNS,
    OP_DELETE,
    OP_READ,
    OP_TRUNCATE,
    OP_UPDATE,
    UNSENT_PREFIX,
    ChangeBatch,
)
from syncengine.config.models import ConflictsConfig, PipelineConfig
from syncengine.conflicts import queue, switch
from syncengine.conflicts.detect import Detection, detect, json_of
from syncengine.conflicts.detect import same_state as _same
from syncengine.conflicts.fence import fenced, plain_rows, reads_nothing, server_request
from syncengine.conflicts.rows import (
    EXISTS,
    canonical,
    carried_columns,
    json_columns,
    row_hashes,
    row_keys,
)
from syncengine.conflicts.versions import (
    VersionedTarget,
    by_versions,
    recorded_rows,
    target_versions,
)
from syncengine.conflicts.widen import as_sent_types
from syncengine.errors import RetriableError
from syncengine.state.protocols import ConflictQueue
from syncengine.strategies.base import (
    COMMIT_TIME,
    LOCAL,
    MERGED,
    REMOTE,
    SIDE,
    Decision,
    StrategyContext,
    load_strategy,
)
from syncengine.targets.base import ShadowUpdate, TableSpec, TableWrite, Target

log = logging.getLogger("syncengine.conflicts")


@dataclass
class Resolved:
    """The write to apply, and what happened to the batch's rows (for metrics and logs)."""

    write: TableWrite
    strategy: str
    conflicts: int = 0
    echoes: int = 0
    parked: int = 0
    held: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class _QueueMoved(Exception):
    """A conflict was parked or resolved by someone else while this batch was being decided."""


class ConflictResolver:
    def __init__(
        self,
        pipeline: str,
        target: Target,
        state: ConflictQueue,
        conflicts: ConflictsConfig,
        overrides: Mapping[str, ConflictsConfig] | None = None,
        *,
        fence: bool = False,
        stream: str | None = None,
        twin: tuple[str, str] | None = None,
    ) -> None:
        """``twin``: two-way ``manual``, the other direction and its name of this table: its
        pending conflicts hold this direction's changes of their keys too."""
        self.pipeline = pipeline
        self.target = target
        self.state = state
        self.conflicts = conflicts
        self.overrides = dict(overrides or {})
        self.fence = fence
        #: the source stream whose checkpoint fences in-order changes on a server-fence target
        self.stream = stream
        #: tables whose shadow was made to fit their strategy (switch.py)
        self._prepared: set[str] = set()
        #: the target's JSON columns of each prepared table, when it says (see _prepare)
        self._shapes: dict[str, frozenset[str] | None] = {}
        self.twin = twin

    def config_for(self, table: str) -> ConflictsConfig:
        return self.overrides.get(table, self.conflicts)

    async def resolve(self, spec: TableSpec, batch: ChangeBatch) -> Resolved:
        for _ in range(5):
            try:
                return await self._resolve_once(spec, batch)
            except _QueueMoved:
                continue
        raise RetriableError(f"conflict queue of {spec.name} kept changing during a batch")

    def reads_target(self, table: str) -> bool:
        """Whether resolving ``table``'s batches reads its target rows (detection): the
        pipeline then reads and applies the group in one transaction (``start_group``)."""
        return not self.target.change_log and not reads_nothing(self.config_for(table), self.target)

    def resolve_ahead(self, spec: TableSpec, batch: ChangeBatch) -> Resolved | None:
        """:meth:`resolve`'s result when it needs nothing from the target and writes nothing
        to the state store (``remote`` into a ``server_fence`` target, no key held behind a
        conflict, a batch :func:`plain_rows` takes as it is); None otherwise. The stream
        prepares a group this way while the group before it is still committing."""
        config = self.config_for(spec.name)
        if (
            spec.name not in self._prepared
            or not reads_nothing(config, self.target)
            or not self._server_fence
            or self._pending(spec.name)
        ):
            return None
        plain = plain_rows(spec, batch)
        return None if plain is None else self._fenced_plain(spec, batch, config, plain)

    async def _prepare(self, spec: TableSpec, config: ConflictsConfig) -> None:
        """Make the table's shadow fit the strategy (:mod:`.switch`) before its first batch,
        and again once the target made a column of it JSON (a Mongo field whose type
        changed: targets/postgres/jsonpromote.py), which asks for the shadow's rebuild: its
        keys and hashes were made of the typed values."""
        json_columns = getattr(self.target, "json_columns", None)
        shape = json_columns(spec.name) if json_columns is not None else None
        if spec.name in self._prepared and self._shapes.get(spec.name) == shape:
            return
        await switch.prepare(self.target, spec, config, self.stream)
        self._prepared.add(spec.name)
        self._shapes[spec.name] = shape

    async def _resolve_once(self, spec: TableSpec, batch: ChangeBatch) -> Resolved:
        config = self.config_for(spec.name)
        await self._prepare(spec, config)
        quick = self.resolve_ahead(spec, batch)  # nothing to hold, decide or read: Arrow only
        if quick is not None:
            return quick
        pending = self._pending(spec.name)
        changes = normalize(spec, _unique(batch, spec))
        truncates = changes.filter(pl.col("_op") == OP_TRUNCATE)
        rest = changes.filter(pl.col("_op") != OP_TRUNCATE)
        keys = row_keys(rest, spec.key)
        if reads_nothing(config, self.target):
            return await self._fenced_only(spec, batch, config, truncates, rest, keys, pending)
        # A change-log target (Parquet, ``change_log = True``) has no current row to conflict
        # with: everything passes as sent and no shadow is kept.
        detects = not self.target.change_log
        held_mask = _held_mask(keys, pending, rest.height)
        blind = bool(truncates.height) or not detects
        # two-way timestamp: versions judge every change, and order by time, not by position
        # (an echo refreshed first must not fence out an earlier, newer change: conflicts/
        # versions.py), so the position fence is not applied to this direction's changes
        lww = self._last_writer_wins(config) and detects
        det = await detect(
            self.target, spec, rest.filter(~held_mask), assume_empty=blind,
            fence=self.fence and not lww,
        )  # fmt: skip
        real = det.conflict
        absent: list[str] = []
        if lww:
            judged = _judged(det)
            if getattr(self.target, "keeps_tombstones", False):
                gone = _gone_already(det)
                judged = judged | gone
                absent = det.row_key.filter(gone).to_list()
            det = dataclasses.replace(det, conflict=judged)
        plan = _Plan(det.spec, det, config, real)  # det.spec: as detection read the target
        if det.conflict.any():
            versions = await self._versions(plan, REMOTE) if lww else None
            plan.decide(self.pipeline, versions, REMOTE)
        write_spec, write = as_sent_types(spec, det.spec, plan.write_frame(truncates))

        held = _held(spec, rest, keys, pending, held_mask)
        self._commit_queue(det.spec, keys, pending, held, plan.parked, plan.audit)
        shadow = plan.shadow(self.fence) if detects else ShadowUpdate()
        resolved = Resolved(
            TableWrite(
                write_spec,
                batch.replace(write),
                dataclasses.replace(shadow, absent_deletes=absent) if absent else shadow,
            ),
            config.strategy,
            conflicts=plan.n_conflicts,
            echoes=int(det.echo.sum()),
            parked=len(plan.parked),
            held=len(held),
            outcomes=dict(Counter(plan.outcomes)),
        )
        if resolved.conflicts or resolved.held:
            log.info(
                "%s.%s: %d conflict(s) under %s %s, %d held behind pending conflicts",
                self.pipeline, spec.name, resolved.conflicts, config.strategy,
                resolved.outcomes, resolved.held,
            )  # fmt: skip
        return resolved

    def _last_writer_wins(self, config: ConflictsConfig) -> bool:
        """``timestamp`` (or ``merge``) by commit time in a two-way direction: versions decide
        every change (:mod:`syncengine.conflicts.versions`)."""
        two_way = getattr(self.target, "two_way", False)
        return bool(two_way and by_versions(config))

    async def _versions(self, plan: _Plan, side: str) -> pl.DataFrame:
        """``_ts`` and ``_side`` of the target's state for the rows being decided (``side``:
        whose writes the incoming rows are)."""
        rows = plan.det.conflict
        key = list(plan.spec.key)
        local = plan.det.local.filter(rows)
        row_key = plan.det.row_key.filter(rows)
        keys = local.select(key)
        target = self.target
        assert isinstance(target, VersionedTarget)  # _last_writer_wins: a two-way Postgres one
        found = pl.from_arrow(await target.read_commit_times(plan.spec, keys.to_arrow()))
        assert isinstance(found, pl.DataFrame)
        found = found.cast({k: keys.schema[k] for k in key})
        commits = found.select(row_keys(found, key), "_ts", "_mine")
        recorded = pl.from_arrow(await target.read_versions(plan.spec.name, row_key.to_list()))
        assert isinstance(recorded, pl.DataFrame)
        own = recorded
        if hasattr(target, "read_own_versions"):  # a mesh keeps this direction's apart
            mine = pl.from_arrow(await target.read_own_versions(plan.spec.name, row_key.to_list()))
            assert isinstance(mine, pl.DataFrame)
            own = mine
        incoming = plan.det.changes["_ts"].filter(rows)
        return target_versions(row_key, local[EXISTS], commits, recorded, (incoming, side, own))

    async def refresh(self, spec: TableSpec, batch: ChangeBatch) -> TableWrite:
        """Rows the engine itself wrote to the source (two-way sync, ``ECHO`` batches): nothing
        is a conflict; the shadow takes them as the version both sides now hold, so the next
        change of the key is judged against it (a stale one, at or before its key's position,
        changes nothing). Under two-way ``timestamp`` an echo newer than what the target holds
        now (a row provisionally written over a delete, conflicts/versions.py) is written back
        to the target: a correction, audited."""
        config = self.config_for(spec.name)
        await self._prepare(spec, config)
        changes = normalize(spec, _unique(batch, spec))
        rest = changes.filter(pl.col("_op") != OP_TRUNCATE)
        det = await detect(self.target, spec, rest, fence=self.fence)
        nothing = pl.repeat(False, rest.height, eager=True)
        judged = _judged(det) if self._last_writer_wins(config) else nothing
        det = dataclasses.replace(det, echo=~det.stale & ~judged, conflict=judged)
        plan = _Plan(det.spec, det, config, nothing)
        if judged.any():  # whole rows by version, also under merge (conflicts/versions.py)
            plan.decide(self.pipeline, await self._versions(plan, LOCAL), LOCAL, "timestamp")
            self._commit_queue(det.spec, det.row_key, {}, [], [], plan.audit)
        write_spec, write = as_sent_types(spec, det.spec, plan.write_frame(rest.clear()))
        return TableWrite(write_spec, batch.replace(write), plan.shadow(self.fence))

    def _pending(self, table: str) -> dict[str, int]:
        """Row key → conflict id of the keys whose changes wait: this direction's pending
        conflicts and, two-way ``manual``, the other direction's (a key is parked on both
        sides; a two-way manual table names its columns alike in both, so do the keys)."""
        pending = self.state.pending_conflict_keys(self.pipeline, table)
        if self.twin is None:
            return pending
        return {**self.state.pending_conflict_keys(*self.twin), **pending}

    @property
    def _server_fence(self) -> bool:
        return bool(getattr(self.target, "server_fence", False))

    def _fenced_plain(
        self, spec: TableSpec, batch: ChangeBatch, config: ConflictsConfig, rows: pa.Table
    ) -> Resolved:
        """:meth:`_fenced_only` for a batch :func:`plain_rows` could take as it is, into a
        ``server_fence`` target, with no key waiting behind a conflict: the same write and
        fence request, without the Polars frames (only the key column is encoded)."""
        key_frame = pl.from_arrow(rows.select(list(spec.key)))
        assert isinstance(key_frame, pl.DataFrame)
        keys = row_keys(key_frame, spec.key)
        shadow = server_request(keys.to_arrow(), batch.meta, fence=self.fence, stream=self.stream)
        return Resolved(TableWrite(spec, batch.replace(rows), shadow), config.strategy)

    async def _fenced_only(
        self,
        spec: TableSpec,
        batch: ChangeBatch,
        config: ConflictsConfig,
        truncates: pl.DataFrame,
        rest: pl.DataFrame,
        keys: pl.Series,
        pending: dict[str, int],
    ) -> Resolved:
        """``remote`` without read-back (:mod:`syncengine.conflicts.fence`): no detection, no
        hashes; changes to keys held behind a pending manual conflict still wait."""
        held_mask = _held_mask(keys, pending, rest.height)
        held = _held(spec, rest, keys, pending, held_mask)
        self._commit_queue(spec, keys, pending, held, [], [])
        rows, shadow = await fenced(
            self.target, spec, rest.filter(~held_mask), keys.filter(~held_mask), batch.meta,
            fence=self.fence, truncated=bool(truncates.height), stream=self.stream,
        )  # fmt: skip
        write = pl.concat([truncates, rows], how="vertical") if truncates.height else rows
        return Resolved(TableWrite(spec, batch.replace(write), shadow), config.strategy,
                        held=len(held))  # fmt: skip

    def _commit_queue(
        self,
        spec: TableSpec,
        keys: pl.Series,
        pending: dict[str, int],
        held: list[queue.Held],
        parked: list[queue.Parked],
        audit: list[tuple[str, str, str, str]],
    ) -> None:
        if not (parked or held or audit):
            return
        batch_keys = set(keys.to_list())
        with self.state.transaction() as db:
            now = self._pending(spec.name)
            if {k: v for k, v in now.items() if k in batch_keys} != {
                k: v for k, v in pending.items() if k in batch_keys
            }:
                raise _QueueMoved
            seen = queue.queued_positions(self.state, self.pipeline, spec.name, now)
            parked = [p for p in parked if (p.row_key, p.position) not in seen]
            queue.park(self.state, db, self.pipeline, spec, parked)
            fresh = [h for h in held if (h.row_key, h.position) not in seen]
            queue.hold(self.state, db, self.pipeline, spec.name, fresh)
            self.state.write_audit(db, self.pipeline, spec.name, audit)


def _judged(det: Detection) -> pl.Series:
    """Rows two-way ``timestamp`` decides by versions: every change that would change the
    target (not an echo of what it holds, not stale), snapshot rows aside."""
    return ~det.echo & ~det.stale & (det.changes["_op"] != OP_READ)


def _gone_already(det: Detection) -> pl.Series:
    """Deletes of keys the target no longer holds. Where the target keeps tombstones (a mesh
    node; a Mongo side) they are judged too, so that a newer one is recorded as the key's
    version (a tombstone; nothing is written): a change older than this delete may still be
    on its way to the other side (another node's, or one a Mongo side could not time), and
    without the delete's time it would be applied there as if over an unknown delete, with no
    echo to correct it, since this delete wrote nothing (README, *Meshes*, *Two-way sync*)."""
    return ~det.stale & (det.changes["_op"] == OP_DELETE) & ~det.local[EXISTS].fill_null(False)


def _held_mask(keys: pl.Series, pending: dict[str, int], n: int) -> pl.Series:
    """Rows whose key has a pending manual conflict (they wait behind it)."""
    return keys.is_in(list(pending)) if pending else pl.repeat(False, n, eager=True)


def _held(
    spec: TableSpec,
    rest: pl.DataFrame,
    keys: pl.Series,
    pending: dict[str, int],
    held_mask: pl.Series,
) -> list[queue.Held]:
    waiting = rest.filter(held_mask)
    return [
        queue.Held(pending[k], k, pos, text)
        for k, pos, text in zip(
            keys.filter(held_mask), waiting["_pos"],
            queue.change_texts(waiting, spec.schema.names), strict=True,
        )
    ]  # fmt: skip


def ordered(config: PipelineConfig) -> bool:
    """Whether the source's positions sort in change order (the position fence needs that):
    Postgres CDC (LSNs) and Mongo (cluster times); not incremental polling (cursor values)."""
    return config.source.positions_sort()


def _unique(batch: ChangeBatch, spec: TableSpec) -> ChangeBatch:
    """The batch with one change per key (compacted if the runtime has not done it)."""
    frame = batch.data.select([c for c in spec.key if c in batch.data.column_names])
    ops = batch.data.column("_op")
    if frame.num_columns != len(spec.key):
        raise ValueError(f"batch for {spec.name} lacks key columns {spec.key}")
    keyed = pl.from_arrow(frame.append_column("_op", ops))
    assert isinstance(keyed, pl.DataFrame)
    keyed = keyed.filter(pl.col("_op") != OP_TRUNCATE)
    if keyed.select(spec.key).is_duplicated().any():
        return ChangeBatch(batch.table, batch.data, spec.key, batch.meta).compact()
    return batch


def normalize(spec: TableSpec, batch: ChangeBatch) -> pl.DataFrame:
    """The batch with the spec's columns and types; a spec column the batch lacks is unsent
    in its updates (``u`` keeps the target value; ``c``/``r`` rows do not have it: null)."""
    frame = batch.to_polars()
    data = canonical(frame.select([c for c in spec.schema.names if c in frame.columns]), spec)
    is_update = frame["_op"] == OP_UPDATE
    unsent = []
    for name in spec.schema.names:
        mask_name = UNSENT_PREFIX + name
        if mask_name in frame.columns:
            unsent.append(frame[mask_name].fill_null(False))
        elif name not in frame.columns:
            unsent.append(is_update.alias(mask_name))
    extra = [c for c in frame.columns if c.startswith(BEFORE_PREFIX)]
    return pl.concat(
        [data, frame.select(*META_COLUMNS, *extra), pl.DataFrame(unsent)], how="horizontal"
    )


class _Plan:
    """The decisions for one batch's examined rows, and the writes that follow from them."""

    def __init__(
        self,
        spec: TableSpec,
        det: Detection,
        config: ConflictsConfig,
        real: pl.Series | None = None,
    ) -> None:
        """``real``: the rows that are conflicts (the target changed since the shadow) where
        more rows than those are decided (two-way ``timestamp`` judges every change)."""
        self.spec = spec
        self.det = det
        self.config = config
        n = det.changes.height
        self.real = det.conflict if real is None else real
        self.n_conflicts = int(self.real.sum())
        self.columns = spec.schema.names
        # per examined row: write as sent / write ``chosen`` in full / write nothing
        self.as_sent = ~det.echo & ~det.conflict & ~det.stale
        self.in_full = pl.repeat(False, n, eager=True)
        self.chosen = det.after
        self.source = det.after
        self.source_json = det.after_json
        self.source_hash = det.after_hash
        self.settled = ~det.stale  # shadow follows source (not parked, not a replay)
        self.parked: list[queue.Parked] = []
        self.audit: list[tuple[str, str, str, str]] = []
        self.outcomes: list[str] = []
        #: two-way ``timestamp``: versions of the rows written (ShadowUpdate.versions)
        self.versions: pa.Table | None = None

    def decide(
        self,
        pipeline: str,
        versions: pl.DataFrame | None = None,
        side: str = REMOTE,
        strategy_name: str | None = None,
    ) -> None:
        """``versions``: ``_ts`` and ``_side`` of each decided target row, where the strategy
        compares versions (two-way ``timestamp`` and ``merge``); ``side``: whose write the
        incoming rows are (``local``: echoes of rows that came from the target);
        ``strategy_name``: another strategy than the configured one (echoes under ``merge``
        are judged whole-row). A decided row is audited when it is a conflict or its outcome
        is not the usual one (a change not applied, an echo written back)."""
        det, spec, config = self.det, self.spec, self.config
        strategy = load_strategy(strategy_name or config.strategy)
        rows = det.conflict
        idx = rows.arg_true()
        base = det.base(rows)
        source = det.source_image(rows, base)
        local = det.local.filter(rows)
        remote = source.with_columns(det.changes.filter(rows).select("_op", "_ts").get_columns())
        if versions is not None:
            local = local.with_columns(versions.get_columns())
            remote = remote.with_columns(pl.lit(side).alias(SIDE))
        ctx = StrategyContext(
            config, spec.key, tuple(self.columns), json_columns(spec.schema), spec.name
        )
        decision = strategy.decide(base, local, remote, ctx)
        _check(decision, idx.len(), strategy.name)
        chosen = canonical(decision.rows.select(self.columns), spec).with_columns(
            decision.rows[EXISTS].cast(pl.Boolean).fill_null(False).alias(EXISTS)
        )
        park = decision.park.cast(pl.Boolean).fill_null(False)
        carried = carried_columns(spec.schema)
        chosen_hash = row_hashes(chosen, self.columns, carried)
        source_json = json_of(source, self.columns)
        source_hash = row_hashes(source, self.columns, carried)
        local_hash = det.local_hash.filter(rows)
        after_hash = det.after_hash.filter(rows)
        keep_local = _same(chosen[EXISTS], chosen_hash, local[EXISTS], local_hash)
        is_source = _same(chosen[EXISTS], chosen_hash, source[EXISTS], source_hash)
        as_sent = (
            ~park
            & ~keep_local
            & is_source
            & _same(source[EXISTS], source_hash, det.after[EXISTS].filter(rows), after_hash)
        )
        in_full = ~park & ~keep_local & ~as_sent

        self.as_sent = self.as_sent.scatter(idx, as_sent)
        self.in_full = self.in_full.scatter(idx, in_full)
        self.chosen = _scatter_rows(self.chosen, idx, chosen)
        self.source = _scatter_rows(self.source, idx, source)
        self.source_json = self.source_json.scatter(idx, source_json)
        self.source_hash = self.source_hash.scatter(idx, source_hash)
        self.settled = self.settled.scatter(idx, ~park)

        row_key = det.row_key.filter(rows)
        outcome = decision.outcome.cast(pl.String).fill_null(strategy.name)
        by = f"strategy:{strategy.name}"
        audited = self.real.filter(rows)
        if versions is not None:
            # a merged row is a write after both it merges (conflicts/versions.py): recorded
            # a microsecond after the newer one, so its echo beats that write's own row
            merged = (outcome == MERGED) & ~keep_local
            written = ((outcome == REMOTE) | merged) & ~park
            times = det.changes["_ts"].filter(rows)
            target_time = local[COMMIT_TIME].cast(times.dtype)
            after = pl.max_horizontal(times, target_time) + pl.duration(microseconds=1)
            newer = pl.select(after).to_series()
            times = pl.select(pl.when(merged).then(newer).otherwise(times)).to_series()
            self.versions = recorded_rows(
                row_key, times, side, chosen[EXISTS], written, chosen_hash
            )
            audited = audited | (written != (side == REMOTE))
        self.outcomes = outcome.filter(audited).to_list()
        self.audit = [
            (k, strategy.name, o, by)
            for k, o in zip(row_key.filter(audited), outcome.filter(audited), strict=True)
        ]
        local_json = json_of(local, self.columns)
        base_json = pl.select(pl.when(base[EXISTS]).then(det.shadow_base.filter(rows))).to_series()
        changes = det.changes.filter(rows)
        for i in park.arg_true():
            self.parked.append(
                queue.Parked(
                    row_key[i],
                    base_json[i],
                    local_json[i],
                    source_json[i],
                    changes["_pos"][i],
                    changes["_op"][i],
                )  # fmt: skip
            )

    def write_frame(self, truncates: pl.DataFrame) -> pl.DataFrame:
        """The rows to apply, in the batch's order, typed as the spec."""
        changes = self.det.changes
        full = self.in_full
        replaced = changes.with_columns(
            *(
                pl.when(full).then(self.chosen[c]).otherwise(changes[c]).alias(c)
                for c in self.columns
            ),
            pl.when(full & ~self.chosen[EXISTS])
            .then(pl.lit(OP_DELETE))
            .when(full)
            .then(pl.lit(OP_UPDATE))
            .otherwise(pl.col("_op"))
            .alias("_op"),
            *((pl.col(c) & ~full).alias(c) for c in changes.columns if c.startswith(UNSENT_PREFIX)),
        )
        rows = replaced.filter(self.as_sent | full)
        return pl.concat([truncates, rows], how="vertical") if truncates.height else rows

    def shadow(self, tombstones: bool) -> ShadowUpdate:
        """Settled keys' source version and position; deleted keys become tombstones (for the
        position fence) or lose their shadow row."""
        settled = self.settled
        exists = self.source[EXISTS]
        upserts = pl.DataFrame(
            {
                "row_key": self.det.row_key,
                "row_hash": self.source_hash,
                "base": pl.select(pl.when(exists).then(self.source_json)).to_series(),
                "position": self.det.changes["_pos"],
                "fresh": self.det.unshadowed,
            },
            schema={
                "row_key": pl.String,
                "row_hash": pl.String,
                "base": pl.String,
                "position": pl.String,
                "fresh": pl.Boolean,
            },
        ).filter(settled)
        if tombstones:
            return ShadowUpdate(upserts=upserts.to_arrow(), versions=self.versions)
        gone = upserts["row_hash"].is_null()
        deletes = upserts.filter(gone)["row_key"].to_list()
        return ShadowUpdate(
            upserts=upserts.filter(~gone).to_arrow(), deletes=deletes, versions=self.versions
        )


def _scatter_rows(frame: pl.DataFrame, idx: pl.Series, rows: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the rows at ``idx`` replaced by ``rows`` (works for struct columns too,
    which ``Series.scatter`` does not support)."""
    mask = pl.repeat(False, frame.height, eager=True).scatter(idx, True)
    at = pl.DataFrame({"__i": pl.arange(frame.height, eager=True, dtype=pl.Int64)})
    placed = at.join(
        rows.with_columns(idx.cast(pl.Int64).alias("__i")), on="__i", how="left",
        maintain_order="left",
    )  # fmt: skip
    return frame.with_columns(
        pl.when(mask).then(placed[c]).otherwise(frame[c]).alias(c) for c in frame.columns
    )


def _check(decision: Decision, n: int, name: str) -> None:
    sizes = (decision.rows.height, decision.park.len(), decision.outcome.len())
    if sizes != (n, n, n):
        raise ValueError(f"strategy '{name}' answered {sizes} rows for {n} conflicts")
    if EXISTS not in decision.rows.columns:
        raise ValueError(f"strategy '{name}' returned rows without '{EXISTS}'")
