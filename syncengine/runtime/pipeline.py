"""One pipeline's stages wired together: map → compact → resolve conflicts → apply → ack.

:meth:`Pipeline.process` is the single place where source batches become a target commit.
Everything a group of batches produces (rows for every target table, shadow rows, the
checkpoint) goes to the target in one ``apply`` call, and the source is acknowledged only
after it returned. Dead letters are written before that commit, so a crash can duplicate a
dead letter but never lose one.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa

from syncengine import keyless
from syncengine.changes import (
    DENSE_FENCE,
    DRAIN_END,
    ECHO,
    LIVE_COPY,
    REPLAYED,
    SETTLED,
    ChangeBatch,
    concat_batches,
)
from syncengine.codecs.bson_types import wider_bson_field
from syncengine.config.models import ConflictsConfig, MappingConfig, PipelineConfig
from syncengine.errors import FatalError
from syncengine.plugins import source_factory
from syncengine.runtime import pausing, restate, tablestats, unsent
from syncengine.runtime.copypace import StreamLag
from syncengine.runtime.declared import (
    Declared,
    declared_types,
    defaults_kept,
    same_declared,
    stale_generated,
    without_generated,
)
from syncengine.runtime.jsonfields import typed_as_json
from syncengine.runtime.metrics import Metrics
from syncengine.runtime.phases import PhaseClock
from syncengine.runtime.sharedtargets import kept_elsewhere
from syncengine.runtime.superseded import PendingLetters
from syncengine.runtime.tableops import RESNAPSHOT
from syncengine.runtime.warmup import FIRST_GROUP_IMPORTS
from syncengine.sources.base import ChangeSource
from syncengine.state import DeadLetter, StateStore
from syncengine.targets.base import Checkpoint, TableSpec, TableWrite, Target
from syncengine.targets.precision import held_as_stored

if TYPE_CHECKING:  # imported where used: building a pipeline must not load them all
    from syncengine.conflicts.resolver import ConflictResolver, Resolved
    from syncengine.mappings.plan import CompiledMapping

log = logging.getLogger("syncengine.pipeline")


@dataclass
class BatchReport:
    read: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    conflicts: int = 0


class PrepareLater(Exception):
    """A group prepared ahead needs what the commit before it writes, or the target's
    connection that commit holds (:meth:`Pipeline.prepare`): prepare it after that commit."""


@dataclass
class Prepared:
    """A group mapped and resolved by :meth:`Pipeline.prepare`, for :meth:`Pipeline.commit`.
    ``writes[i]`` is None for a keyless table, whose rows ``keyless[i]`` holds: its fence is
    read at the commit, after the commit before it."""

    batches: list[ChangeBatch]
    position: str | None
    report: BatchReport
    mapped: dict[str, tuple[TableSpec, MappingConfig, list[ChangeBatch]]]
    writes: list[TableWrite | None]
    keyless: dict[int, tuple[TableSpec, list[ChangeBatch]]]
    superseded: list[tuple[int, str]]
    echoes: list[ChangeBatch]
    late: bool
    started: float
    target: Target | None


class Pipeline:
    """The stages of one configured pipeline; sources and targets built from the registries."""

    def __init__(
        self,
        name: str,
        config: PipelineConfig,
        state: StateStore,
        metrics: Metrics | None = None,
    ) -> None:
        from syncengine.targets import make_target

        self.name = name
        self.config = config
        self.state = state
        self.metrics = metrics or Metrics()
        self.source: ChangeSource
        self.target: Target
        if config.fanout is not None:  # the reader or a target's end of a fan-out stream
            from syncengine.cluster.fanout.wiring import fanout_ends

            self.source, self.target, self.mappings = fanout_ends(name, config, state)
        else:
            kind = source_factory(config.source.type)
            self.source = kind.create(name, config.source, state, config.batch)
            self.target = make_target(name, config.target, state)
            self.mappings = config.mappings_for_sources()
        if hasattr(self.source, "row_filters"):  # optional for plugin sources
            self.source.row_filters = self.row_filters
        if hasattr(self.source, "copy_again") and config.backfill.copy_rows:  # a table replaced
            self.source.copy_again = partial(state.request_table, name, kind=RESNAPSHOT, where=None)
        self._compiled: dict[tuple[int, str, Declared], CompiledMapping] = {}
        self._specs: dict[tuple[str, str, Declared], TableSpec] = {}
        self._resolvers: dict[str, ConflictResolver] = {}
        #: (table, column) added with a default whose value is not filled in (warned once)
        self._defaults_warned: set[tuple[str, str]] = set()
        self.rows_applied = 0
        #: dead letters a later change of their key supersedes (superseded.py)
        self.letters = PendingLetters(state, name, ordered=config.source.positions_sort())
        #: source tables a live table snapshot is copying: their stream changes fence densely
        self.dense_fence: set[str] = set()
        #: the lag of the stream's last groups: what a live table copy paces itself by
        self.stream_lag = StreamLag()
        #: the last checkpoint position this process saw its target commit (None: none yet)
        self.committed: str | None = None
        #: a bounded stream's last group (DRAIN_END) committed: the drain is complete
        self.drained = False
        self.phases = PhaseClock(self._count_phase)
        self._restates = restate.applies(self)
        self._drops_superseded = restate.drops_superseded(self)
        if hasattr(self.source, "phases"):  # optional for plugin sources: decode time
            self.source.phases = self.phases

    def _count_phase(self, phase: str, seconds: float) -> None:
        self.metrics.phase_seconds.labels(self.name, phase).inc(seconds)

    @property
    def stream_name(self) -> str:
        return self.source.stream_name

    async def open(self) -> None:
        await self.target.open()
        await self.source.open()

    def warm_up(self) -> None:
        """Import now what the first group's map, compaction, resolve and apply import on
        first use (Polars, the mapping compiler, the conflict strategies: ~290 modules, 0.5 s
        on a slow machine), so a daemon's first changes after it starts streaming do not
        wait behind them. One-shot commands import them in a thread once they know there is
        something to apply (:mod:`syncengine.runtime.warmup`): a ``sync --once`` with nothing
        to apply needs none of it, and a passthrough backfill never builds a frame
        (:mod:`syncengine.deferred`)."""
        for module in FIRST_GROUP_IMPORTS:
            importlib.import_module(module)

    async def add_tables(self, config: PipelineConfig, added: Sequence[str]) -> None:
        """Capture ``added`` (source keys) without stopping the stream: ``config`` is this
        pipeline's config with those tables and their mappings added, nothing else changed
        (:func:`syncengine.runtime.reload.adds_only`). Their mappings are appended (the ones
        in use keep their places, so compiled mappings stay cached) before the source
        publishes the tables' changes: a change of a table without a mapping is ignored.
        The config is swapped only once the source captures them, which is when their
        snapshot requests may start (:class:`~syncengine.runtime.tableops.TableOps`)."""
        adder = getattr(self.source, "add_tables", None)
        if adder is None:
            raise FatalError(f"{self.name}: a {config.source.type} source cannot add tables live")
        wanted = set(added)
        key = config.source_key
        self.mappings = [
            *self.mappings,
            *(m for m in config.mappings_for_sources() if key(m.source) in wanted),
        ]
        await adder(config.source)
        self.config = config

    def captures(self, table: str) -> bool:
        """Whether ``table`` (a source key) is one this pipeline reads."""
        key = self.config.source_key
        return table in {key(t) for t in self.config.source.table_names()}

    async def close(self) -> None:
        for closer in (self.source.close, self.target.close):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - closing after a failure must not mask it
                log.debug("close failed", exc_info=True)

    async def checkpoint(self) -> str | None:
        return await self.target.get_checkpoint(self.stream_name)

    # -- stages ---------------------------------------------------------------------------

    def mappings_for(self, table: str) -> list[tuple[int, MappingConfig]]:
        wanted = self.config.source_key(table)
        key = self.config.source_key
        return [(i, m) for i, m in enumerate(self.mappings) if key(m.source) == wanted]

    def row_filters(self, table: str) -> tuple[tuple[str, str], ...]:
        """The filters of the mappings reading ``table``, for the source to push down: a row
        that none of them keeps is never needed. Empty when one of them has no filter."""
        mappings = [m for _, m in self.mappings_for(table)]
        if not mappings or any(m.filter is None for m in mappings):
            return ()
        return tuple((m.filter, m.dialect) for m in mappings if m.filter is not None)

    def compile(self, index: int, mapping: MappingConfig, batch: ChangeBatch) -> CompiledMapping:
        """Mapping ``index`` compiled for ``batch``'s schema, cached per mapping and schema:
        what the pipeline applies to the batch, and what ``verify`` maps a source scan with.
        The columns' declared types are part of the schema (they become the target's)."""
        from syncengine.mappings import compile_mapping

        rows_schema = batch.data.schema
        shape = rows_schema.to_string(show_field_metadata=False)
        cache_key = (index, shape, declared_types(rows_schema))
        compiled = self._compiled.get(cache_key)
        if compiled is None:
            source_schema = batch.rows.schema
            compiled = compile_mapping(
                self.name,
                mapping,
                source_schema,
                tuple(batch.key),
                kept_elsewhere=kept_elsewhere(self, index, mapping),
            )
            self._compiled[cache_key] = compiled
        return compiled

    async def _spec(
        self,
        compiled: CompiledMapping,
        mapping: MappingConfig,
        target: Target | None = None,
        ensured: bool = False,
    ) -> TableSpec:
        wanted = TableSpec(mapping.target_name, tuple(compiled.key), compiled.target_schema)
        return await self._ensure(wanted, target, ensured)

    async def target_spec(
        self, mapping: MappingConfig, schema: pa.Schema, key: tuple[str, ...]
    ) -> TableSpec:
        """The target table ``mapping`` makes of source rows of ``schema``, ensured at the
        target as the first batch would (the snapshot passthrough writes before any batch).
        An identity mapping's table is known without compiling it (see .identity)."""
        from syncengine.runtime.identity import identity_spec

        known = identity_spec(mapping, schema, key)
        if known is not None:
            return await self._ensure(known)
        from syncengine.mappings import compile_mapping

        compiled = compile_mapping(self.name, mapping, schema, tuple(key))
        return await self._spec(compiled, mapping)

    async def _ensure(
        self, wanted: TableSpec, target: Target | None = None, ensured: bool = False
    ) -> TableSpec:
        """The target's version of ``wanted``, asking the target once per table and schema
        (through ``target``, the connection beside the stream's, when given). ``ensured``:
        only one already asked for (:class:`PrepareLater` otherwise). A column's declared
        type (``pg_type``) is part of the schema: a source's ``ALTER COLUMN … TYPE`` from
        ``varchar(5)`` to ``text`` keeps the Arrow type, and the target must still see it."""
        shape = wanted.schema.to_string(show_field_metadata=False)
        cache_key = (wanted.name, shape, declared_types(wanted.schema))
        spec = self._specs.get(cache_key)
        if spec is None:
            if ensured:
                raise PrepareLater(f"{wanted.name}: a table or schema new to the target")
            spec = await (target or self.target).ensure_table(wanted)
            self._specs[cache_key] = spec
            stale_generated(self.target, wanted)
        return spec

    def _resolver(self, mapping: MappingConfig) -> ConflictResolver:
        from syncengine.conflicts import ConflictResolver
        from syncengine.conflicts.resolver import ordered

        resolver = self._resolvers.get(mapping.target_name)
        if resolver is None:
            conflicts = mapping.conflicts or self.config.conflicts
            resolver = ConflictResolver(
                self.name, self.target, self.state, conflicts, fence=ordered(self.config),
                stream=self.stream_name, twin=self._twin(mapping, conflicts),
            )  # fmt: skip
            self._resolvers[mapping.target_name] = resolver
        return resolver

    def _twin(self, mapping: MappingConfig, conflicts: ConflictsConfig) -> tuple[str, str] | None:
        """Two-way ``manual``: the other direction and its name of ``mapping``'s table, whose
        pending conflicts hold this direction's changes too (ConflictResolver.twin)."""
        if conflicts.strategy != "manual" or not getattr(self.target, "two_way", False):
            return None
        from syncengine.config.twoway import sibling_name, twin_table

        return sibling_name(self.name), twin_table(mapping)

    async def process(
        self,
        batches: Sequence[ChangeBatch],
        position: str | None,
        *,
        release: bool = False,
        target: Target | None = None,
    ) -> BatchReport:
        """Map, compact, resolve and apply ``batches``; commit ``position`` with them. The
        batches of paused tables are held in the state store instead (:mod:`.pausing`), unless
        this is the ``release`` of what they held. ``target``: apply there instead (a target's
        connection beside the stream's, :mod:`.beside`; snapshot rows only)."""
        prepared = await self.prepare(batches, position, release=release, target=target)
        return await self.commit(prepared)

    async def prepare(
        self,
        batches: Sequence[ChangeBatch],
        position: str | None,
        *,
        release: bool = False,
        target: Target | None = None,
        ahead: bool = False,
    ) -> Prepared:
        """Everything :meth:`process` does before the target commit: map, compact, resolve.

        ``ahead``: while the group before this one is still committing (the stream overlaps
        this CPU work with the target's, :mod:`.inflight`). Such a preparation must neither
        read what that commit writes nor touch the target's connection, which the commit
        holds: it raises :class:`PrepareLater` at the first step that would (a paused table,
        a live table copy, two-way, a table or schema not yet ensured at the target, a
        strategy that reads the target, a bad record), before any side effect; the caller
        then prepares the group again after that commit."""
        started = time.perf_counter()
        report = BatchReport()
        # read once: a pause request written between two reads would be confirmed by
        # hold_paused while the commit in flight (which _check_ahead let this run beside)
        # could still land changes of the table
        pauses = None if release else self.state.pauses(self.name)
        if ahead:
            self._check_ahead(batches, bool(pauses))
        if pauses is not None:
            batches = pausing.hold_paused(self, batches, pauses)
        if self.dense_fence:
            batches = [
                replace(b, meta={**b.meta, DENSE_FENCE: True})
                if b.table in self.dense_fence and not b.meta.get(REPLAYED)
                else b
                for b in batches
            ]
            # a row the copy has not landed yet must not be created without them
            batches = await unsent.completed(self, batches)
        if any(b.meta.get(LIVE_COPY) for b in batches):
            batches = self._settled(batches)
        if self._restates:  # two-way prefer, out of the preferred side: its present rows
            batches = await restate.restate(self, batches)
        if self._drops_superseded:  # a mesh: what a third node's write at the source replaced
            batches = await restate.without_superseded(self, batches)
        echoes = [b for b in batches if b.meta.get(ECHO)]
        late = bool(echoes) and self._echoes_last()
        if late and restate.versions_echoes(self):  # their own versions, not the group's time
            echoes = await restate.versioned_echoes(self, echoes)
        if echoes:  # two-way: the engine's own writes, before the changes that follow them
            if not late:
                await self._refresh(echoes)
            batches = [b for b in batches if not b.meta.get(ECHO)]
        mapped: dict[str, tuple[TableSpec, MappingConfig, list[ChangeBatch]]] = {}
        schemas: dict[str, list[pa.Schema]] = {}  # per target table, each schema its parts map to
        letters: list[DeadLetter] = []
        superseded: list[tuple[int, str]] = []
        mapping_started = time.perf_counter()
        for batch in batches:
            if batch.meta.get("copied"):
                self._count_copied(batch, report)
            if not batch.num_rows:
                if "chunk" in batch.meta and not batch.meta.get("copied"):
                    # an empty snapshot chunk: maybe an empty table
                    await self._ensure_empty(batch)
                continue
            report.read += batch.num_rows
            superseded += self.letters.match(batch.table, batch.data, batch.key, target_stage=False)
            for index, mapping in self.mappings_for(batch.table):
                compiled = self.compile(index, mapping, batch)
                result = compiled.apply(batch)
                letters.extend(result.dead_letters)
                if result.batch.num_rows:
                    spec = TableSpec(
                        mapping.target_name, tuple(compiled.key), compiled.target_schema
                    )
                    first, _, parts = mapped.setdefault(spec.name, (spec, mapping, []))
                    parts.append(result.batch)
                    mapped[spec.name] = (first, mapping, parts)
                    seen = schemas.setdefault(spec.name, [])
                    if not any(same_declared(spec.schema, s) for s in seen):
                        seen.append(spec.schema)
        for name, (spec, mapping, parts) in mapped.items():
            if len(schemas[name]) > 1:
                # the source schema changed inside this group (ALTER TABLE), or two Mongo
                # flushes typed a field differently
                union = group_schema(schemas[name], [p.data for p in parts])
                spec = TableSpec(spec.name, spec.key, union)
            # once per table and group, for all its parts: a table created or widened for the
            # first part alone could not hold what the others bring (a long beyond 2^53 in one
            # part, a double in another: a double precision column would round the long)
            conflicts = mapping.conflicts or self.config.conflicts
            spec = defaults_kept(spec, conflicts, self.target, self._defaults_warned)
            ensured = await self._ensure(spec, target, ensured=ahead)
            ensured, parts = without_generated(ensured, parts)
            ensured, parts = typed_as_json(self.target, ensured, parts)
            parts = held_as_stored(self.target, ensured, parts)
            mapped[name] = (ensured, mapping, parts)
        self.phases.add("map", time.perf_counter() - mapping_started)
        if letters:
            if ahead:
                raise PrepareLater("a bad record: its dead letter is written in order")
            self._dead_letter(letters)
            report.dead_letters += len(letters)
        # reads and apply in one transaction when a strategy reads the target (start_group)
        reads = any(s.key and self._resolver(m).reads_target(s.name) for s, m, _ in mapped.values())
        if reads and ahead:
            raise PrepareLater("a strategy reads the target")
        await self._group("start_group", target, reads=reads)
        writes: list[TableWrite | None] = []
        keyless: dict[int, tuple[TableSpec, list[ChangeBatch]]] = {}
        resolve_started = time.perf_counter()
        for spec, mapping, parts in mapped.values():
            if self.target.change_log:
                writes.append(TableWrite(spec, concat_batches(parts)))  # every change, in order
                continue
            if not spec.key:  # a multiset of rows: no compaction, shadow or strategy
                keyless[len(writes)] = (spec, parts)  # its fence is read at the commit
                writes.append(None)
                continue
            compacted = concat_batches(parts).compact()
            resolver = self._resolver(mapping)
            if ahead:
                resolved = resolver.resolve_ahead(spec, compacted)
                if resolved is None:
                    raise PrepareLater(f"{spec.name}: its strategy reads the target")
            else:
                resolved = await resolver.resolve(spec, compacted)
            writes.append(resolved.write)
            report.conflicts += self._count_conflicts(resolved, mapping)
        self.phases.add("resolve", time.perf_counter() - resolve_started)
        return Prepared(
            list(batches), position, report, mapped, writes, keyless, superseded, echoes, late,
            started, target,
        )  # fmt: skip

    def _check_ahead(self, batches: Sequence[ChangeBatch], paused: bool) -> None:
        """Raise :class:`PrepareLater` when preparing ``batches`` would read or write what the
        commit in flight holds (see :meth:`prepare`); ``paused``: the pipeline has pauses."""
        if self.dense_fence or self._restates or self._drops_superseded:
            raise PrepareLater("a live table copy, or a two-way read of the other side")
        if getattr(self.target, "two_way", False):
            raise PrepareLater("two-way: a group reads the target in its own snapshot")
        if any(b.meta.get(LIVE_COPY) or b.meta.get(ECHO) or "chunk" in b.meta for b in batches):
            raise PrepareLater("snapshot rows or echoes")
        if paused:
            raise PrepareLater("a paused table")

    async def commit(self, prepared: Prepared) -> BatchReport:
        """The target commit of a :meth:`prepare`d group, its checkpoint with it, then what
        follows it: dead letters of rows the target refused, counters, two-way echoes."""
        p = prepared
        report, mapped, target = p.report, p.mapped, p.target
        for batch in p.batches:
            if batch.num_rows:
                self.metrics.changes_read.labels(self.name, batch.table).inc(batch.num_rows)
        writes: list[TableWrite] = []
        for index, write in enumerate(p.writes):
            if write is None:  # a keyless table's: its fence is read now (_keyless_write)
                write = await self._keyless_write(*p.keyless[index])
            writes.append(write)
        superseded = list(p.superseded)
        for write in writes:  # target-stage letters hold mapped rows: matched as written
            source = self.config.source_key(mapped[write.spec.name][1].source)
            data, spec_key = write.batch.data, write.spec.key
            superseded += self.letters.match(source, data, spec_key, target_stage=True)
        # before the commit: a crash replays the group and marks again, never the reverse
        self.letters.supersede(superseded)
        checkpoint = Checkpoint(self.stream_name, p.position) if p.position else None
        # echoes last (two-way timestamp): the group's changes commit first, the echoes are
        # then judged against what they made of the target and commit the checkpoint
        group_checkpoint = None if p.late else checkpoint
        if writes or group_checkpoint:
            with self.phases.timing("apply"):
                applied = await (target or self.target).apply(writes, group_checkpoint)
            if applied.rejected:
                # a letter names the source table: replay reads its schema from there
                key = self.config.source_key
                sources = {name: key(m.source) for name, (_, m, _) in mapped.items()}
                rejected = [
                    DeadLetter(
                        self.name,
                        sources.get(table, table),
                        "target",
                        reason,
                        json.dumps(row, default=str),
                    )
                    for table, row, reason in applied.rejected
                ]
                self._dead_letter(rejected)
                report.dead_letters += len(rejected)
        self._count_applied(writes, report)
        self.rows_applied += sum(report.applied.values())
        self._record_tables(p.batches, report)
        if p.late:
            await self._refresh(p.echoes, checkpoint)
        self.metrics.batch_latency.labels(self.name).observe(time.perf_counter() - p.started)
        await self._group("end_group", target)
        if checkpoint is not None and target is None:  # a stream group
            self.committed = checkpoint.position
            self.stream_lag.add_group(p.batches)
            self.drained = any(b.meta.get(DRAIN_END) for b in p.batches)
        return report

    def _settled(self, batches: Sequence[ChangeBatch]) -> list[ChangeBatch]:
        """A live table copy's batches with :data:`SETTLED`: the checkpoint committed before
        they were handed over, below which their rows need no fence row. Not for a paused
        table: the changes it holds sit below that checkpoint and are released later, over
        the copied rows, which must fence them. A pause confirmed after this point holds only
        changes above it."""
        if self.committed is None:
            return list(batches)
        paused = self.state.pauses(self.name)
        return [
            replace(b, meta={**b.meta, SETTLED: self.committed})
            if b.meta.get(LIVE_COPY) and b.table not in paused
            else b
            for b in batches
        ]

    def _count_applied(self, writes: Sequence[TableWrite], report: BatchReport | None) -> None:
        """The rows written, by table and op, to the metrics (and to ``report``)."""
        for write in writes:
            ops = write.batch.data.column("_op").value_counts().to_pylist()
            for item in ops:
                self.metrics.changes_applied.labels(self.name, write.spec.name, item["values"]).inc(
                    item["counts"]
                )
                if report is not None:
                    report.applied[write.spec.name] = (
                        report.applied.get(write.spec.name, 0) + item["counts"]
                    )

    def _echoes_last(self) -> bool:
        """Whether a group's echoes are refreshed after its changes rather than before: two-way
        ``timestamp`` (or ``merge``) by commit time, where versions decide and the order must
        be the source's (an echo written after a change is judged after it:
        syncengine.conflicts.versions). Otherwise the echoes go first and fence out the
        changes they overwrote."""
        from syncengine.conflicts.versions import by_versions

        two_way = getattr(self.target, "two_way", False)
        return bool(two_way and by_versions(self.config.conflicts))

    async def _group(self, step: str, target: Target | None = None, **args: bool) -> None:
        """``start_group`` / ``end_group`` of a target that has them (PostgresTarget.start_group:
        a group reads back and applies in one transaction); a failed group's leftover
        transaction is rolled back by the next ``start_group`` or the reconnect. ``target``:
        the one applying (a lane's must never touch the stream's open transaction)."""
        method = getattr(target or self.target, step, None)
        if method is not None:
            await method(**args)

    async def _refresh(
        self, echoes: Sequence[ChangeBatch], checkpoint: Checkpoint | None = None
    ) -> None:
        """The shadow learns what the other direction of a two-way pipeline wrote to this
        direction's source (the common version of those keys), in a transaction of its own
        before the group's: a crash in between replays them, fenced by their positions. Under
        two-way ``timestamp`` it comes after the group's changes (:meth:`_echoes_last`), its
        reads and the corrections it may write share one snapshot, and it commits
        ``checkpoint`` (a crash before replays the changes, which versions then skip)."""
        mapped = []
        for batch in echoes:
            if not batch.num_rows:
                continue
            for index, mapping in self.mappings_for(batch.table):
                result = self.compile(index, mapping, batch).apply(batch)
                if result.batch.num_rows:
                    spec = await self._spec(self.compile(index, mapping, batch), mapping)
                    mapped.append((mapping, spec, result.batch.compact()))
        if self._echoes_last():  # its reads and corrections in one snapshot, as a group's
            await self._group("start_group")
        writes: list[TableWrite] = []
        for mapping, spec, compacted in mapped:
            writes.append(await self._resolver(mapping).refresh(spec, compacted))
        if writes or checkpoint:
            await self.target.apply(writes, checkpoint)
            # corrections (two-way timestamp) are writes too: the metrics show them, so a
            # correction that ping-pongs is seen (not in a group's report: no change caused them)
            self._count_applied(writes, None)

    def _record_tables(self, batches: Sequence[ChangeBatch], report: BatchReport) -> None:
        """The group's per source table counters, to the state store and the metrics."""
        key = self.config.source_key
        sources = {m.target_name: key(m.source) for m in self.mappings}
        stats = tablestats.group_stats(batches, report.applied, sources)
        self.state.add_table_stats(self.name, stats)
        for table, (_, _, lag) in stats.items():
            if lag is not None:
                self.metrics.table_lag_seconds.labels(self.name, table).set(lag)

    async def apply_mapped(
        self, mapping: MappingConfig, spec: TableSpec, batch: ChangeBatch
    ) -> int:
        """Resolve and apply ``batch``, already in the target's terms (columns of ``spec``), as
        its own target transaction without a checkpoint: the deletes of a table sweep
        (:mod:`syncengine.runtime.sweep`). Returns the rows written."""
        resolved = await self._resolver(mapping).resolve(spec, batch)
        await self.target.apply([resolved.write], None)
        return int(resolved.write.batch.num_rows)

    async def _keyless_write(self, spec: TableSpec, parts: list[ChangeBatch]) -> TableWrite:
        """Every change of a keyless table, in order, without what a replay repeats (its fence:
        :mod:`syncengine.keyless`), and the fence moved past them."""
        found = await self.target.read_shadow(spec.name, [keyless.FENCE_KEY])
        fence = found.column("position")[0].as_py() if found.num_rows else None
        parts = [keyless.unfenced(p, fence) for p in parts]
        return TableWrite(spec, concat_batches(parts), keyless.fence_shadow(parts))

    async def _ensure_empty(self, batch: ChangeBatch) -> None:
        """An empty table's snapshot: its target table is created all the same (with the types
        and key it would have with rows), as pg_dump and native subscriptions do."""
        for index, mapping in self.mappings_for(batch.table):
            await self._spec(self.compile(index, mapping, batch), mapping)

    def _count_copied(self, batch: ChangeBatch, report: BatchReport) -> None:
        """A snapshot chunk the source copied straight into the target (binary COPY, see
        runtime/passthrough.py): its rows count as read and applied like any others."""
        rows = batch.meta["copied"]
        assert isinstance(rows, int)
        report.read += rows
        self.metrics.changes_read.labels(self.name, batch.table).inc(rows)
        for _, mapping in self.mappings_for(batch.table):
            table = mapping.target_name
            self.metrics.changes_applied.labels(self.name, table, "r").inc(rows)
            report.applied[table] = report.applied.get(table, 0) + rows

    def _count_conflicts(self, resolved: Resolved, mapping: MappingConfig) -> int:
        strategy = (mapping.conflicts or self.config.conflicts).strategy
        for outcome, count in resolved.outcomes.items():
            if count:
                self.metrics.conflicts.labels(
                    self.name, mapping.target_name, strategy, outcome
                ).inc(count)
        return sum(resolved.outcomes.values())

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        self.state.add_dead_letters(letters)
        self.letters.forget()
        for letter in letters:
            self.metrics.dead_letters.labels(self.name, letter.table).inc()
        first = letters[0]
        log.warning(
            "%s: %d record(s) sent to dead letters (first: %s: %s)",
            self.name,
            len(letters),
            first.table,
            first.reason,
        )
        if self.config.on_error == "fail":
            raise FatalError(
                f"pipeline '{self.name}' stopped on a bad record ({first.table}: {first.reason})",
                hint="see `syncengine deadletters list`; set on_error: dead_letter to continue "
                "past bad records",
            )


def union_schema(first: pa.Schema, second: pa.Schema) -> pa.Schema:
    """Every column of both, each typed by :func:`common_field`."""
    fields = {f.name: f for f in first}
    for f in second:
        known = fields.get(f.name)
        fields[f.name] = f if known is None else common_field(known, f)
    return pa.schema(list(fields.values()))


def group_schema(schemas: Sequence[pa.Schema], parts: Sequence[pa.Table]) -> pa.Schema:
    """One schema for a group's batches of a table, mapped to ``schemas``: every column of
    them, each with a type all their values fit in (:func:`union_schema`: int + float → float,
    wider decimal scale, null → the other, incompatible types → text). Values are cast to it,
    so it must never narrow. A Mongo field two of them type differently beyond numeric width
    is typed as :func:`~syncengine.changes.concat_batches` types ``parts``' values (the
    batches' data): a long beside a double is a double only when the longs fit one exactly,
    which the fields alone cannot say."""
    union = functools.reduce(union_schema, schemas)
    joined = _joined_mongo_fields(schemas, parts)
    return pa.schema([joined.get(f.name, f) for f in union]) if joined else union


def _joined_mongo_fields(
    schemas: Sequence[pa.Schema], parts: Sequence[pa.Table]
) -> dict[str, pa.Field]:
    """The fields of ``parts``' join for the Mongo fields ``schemas`` type differently (none:
    nothing is decoded)."""
    kinds: dict[str, set[tuple[pa.DataType, bytes]]] = {}
    for schema in schemas:
        for f in schema:
            kind = _bson_kind(f)
            if kind is not None:
                kinds.setdefault(f.name, set()).add(kind)
    differing = [name for name, seen in kinds.items() if len(seen) > 1]
    if not differing:
        return {}
    from syncengine.codecs.bson_arrow import joined_fields  # Mongo fields only

    return joined_fields([t.select([n for n in differing if n in t.column_names]) for t in parts])


def _bson_kind(f: pa.Field) -> tuple[pa.DataType, bytes] | None:
    """A Mongo field's Arrow type and ``bson_type``; None for another field or one whose
    values are all null (typed by nothing: :func:`_typeless`)."""
    if _typeless(f):
        return None
    bson_type = (f.metadata or {}).get(b"bson_type")
    return None if bson_type is None else (f.type, bson_type)


def _typeless(f: pa.Field) -> bool:
    """A field whose values say nothing of its type: Arrow's null type, or a Mongo field of
    nulls only (``bson_type`` null), which a Postgres target types as the existing column."""
    return pa.types.is_null(f.type) or (f.metadata or {}).get(b"bson_type") == b"null"


def common_field(a: pa.Field, b: pa.Field) -> pa.Field:
    """A field whose type holds the values of both (see :func:`group_schema`).

    Two Mongo fields (``bson_type``) that differ in more than numeric width join as
    extended-JSON text, the form :func:`~syncengine.changes.concat_batches` gives their
    values (a string field with another's ``bson_type`` would have a Mongo target write the
    JSON as a string, or an int's text as an int). Two Postgres columns declared differently
    (``pg_type``: the source altered the column between two batches of the group) are
    declared as the type that holds both (:func:`~syncengine.codecs.pg_widening.joined`),
    without a declared type when none does."""
    definitions = (b.metadata or {}).get(b"pg_typedefs")
    if definitions and (a.metadata or {}).get(b"pg_typedefs") not in (None, definitions):
        # read again by the later part (an enum gained a label): it holds the earlier's too
        a = a.with_metadata({**(a.metadata or {}), b"pg_typedefs": definitions})
    declared = [(f.metadata or {}).get(b"pg_type") for f in (a, b)]
    if None not in declared and declared[0] != declared[1]:
        from syncengine.codecs.pg_widening import joined

        both = joined(*(d.decode() for d in declared if d is not None))
        a, b = (_declared(f, both) for f in (a, b))
    if _typeless(a):
        return b
    if _typeless(b):
        return a
    if _bson_json_join(a, b):
        return pa.field(a.name, pa.string(), metadata={"bson_type": "json", "pg_type": "jsonb"})
    if a.type == b.type:
        return wider_bson_field(a, b)
    if pa.types.is_decimal(a.type) and pa.types.is_decimal(b.type):
        scale = max(a.type.scale, b.type.scale)
        digits = max(a.type.precision - a.type.scale, b.type.precision - b.type.scale)
        return a.with_type(pa.decimal128(min(38, digits + scale), scale))
    try:
        merged = pa.unify_schemas(
            [pa.schema([a.with_name("v")]), pa.schema([b.with_name("v")])],
            promote_options="permissive",
        ).field("v")
        return wider_bson_field(a.with_type(merged.type), b)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return a.with_type(pa.string())


def _declared(f: pa.Field, pg_type: str | None) -> pa.Field:
    """``f`` declared as ``pg_type`` (None: without a declared type)."""
    meta = {k: v for k, v in (f.metadata or {}).items() if k != b"pg_type"}
    if pg_type is not None:
        meta[b"pg_type"] = pg_type.encode()
    return f.with_metadata(meta)


def _bson_json_join(a: pa.Field, b: pa.Field) -> bool:
    """Whether two Mongo fields of different BSON types hold values only JSON text can carry
    together (one BSON type in both, e.g. sub-documents with other fields: Arrow's union)."""
    kinds = {(f.metadata or {}).get(b"bson_type") for f in (a, b)}
    if None in kinds or len(kinds) == 1:
        return False
    from syncengine.codecs.bson_types import NUMBERS  # Mongo fields only: bson is not loaded

    return not {kind.decode() for kind in kinds if kind is not None} <= NUMBERS
