"""What passes through Temporal: pipeline names, chunk descriptors and counts, never rows.

These dataclasses are a workflow's inputs and results and its activities' arguments, so they
are all Temporal's history ever holds: of a backfill, a table name, a chunk number and the
chunk's key bounds (JSON text, as the state store keeps them) and row counts; of a stream, the
pipeline's name, timings and its config's fingerprint (no secret: they are masked before it
is hashed). The workflow sandbox imports this module, so it imports nothing but the standard
library.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackfillRequest:
    """A backfill workflow's input: the pipeline (as every worker's config names it)."""

    pipeline: str
    #: chunks whose activities run at once across all workers (each worker also limits its own)
    in_flight: int = 64
    #: a chunk activity silent for this many seconds moves to another worker
    heartbeat: float = 30.0


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one table of one pipeline: enough for any worker to copy it."""

    pipeline: str
    table: str
    chunk: int
    lower: str | None
    upper: str | None


@dataclass(frozen=True)
class ChunkResult:
    """What a chunk activity did: ``rows`` copied, or ``skipped`` (the target already held
    its done-mark, committed by an earlier attempt, maybe on another worker)."""

    table: str
    chunk: int
    rows: int
    skipped: bool = False


@dataclass(frozen=True)
class BackfillResult:
    pipeline: str
    chunks: int
    rows: int
    #: ``table:chunk`` of chunks whose done-mark an earlier attempt committed (copied once)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpreadPlan:
    """A stream's initial snapshot spread over workers (``syncengine.cluster.snapchunks``):
    the position the stream starts from and the chunks to copy first. Empty (``at`` is ""):
    nothing to spread (a checkpoint exists, or the first stream attempt backfills)."""

    at: str = ""
    tasks: list[ChunkTask] = field(default_factory=list)


@dataclass(frozen=True)
class StreamRequest:
    """A stream workflow's input, and what ``apply`` compares to decide that a running
    pipeline changed (it then signals ``update`` with the new one)."""

    pipeline: str
    #: a stream activity silent for this many seconds moves to another worker
    heartbeat: float = 30.0
    #: the stream activity ends after this long and the workflow continues as new
    slice_seconds: float = 3600.0
    #: of the pipeline's config as ``apply`` read it; a worker whose own config differs
    #: refuses to run the stream (retried, maybe on another worker)
    fingerprint: str = ""
    #: chunks of the initial snapshot copied at once across workers (0: the first stream
    #: attempt backfills on its own worker); each holds a temporary replication slot
    snapshot_in_flight: int = 0
    #: set by the workflow, never by ``apply`` (and left out of what it compares): the spread
    #: snapshot carried over ``continue_as_new`` (None: not planned yet); the stream activity
    #: gets its position alone, committed as the checkpoint when there is none
    spread: SpreadPlan | None = None


@dataclass(frozen=True)
class SpreadChunk:
    """One chunk of a spread snapshot: what its activity needs on any worker."""

    request: StreamRequest
    task: ChunkTask
    at: str


@dataclass(frozen=True)
class StreamResult:
    """What one stream activity did before it ended (its slice was over, or it was asked to
    stop): the fencing epoch it held and the changes it applied."""

    pipeline: str
    epoch: int
    applied: int


def workflow_id(kind: str, pipeline: str) -> str:
    """The deterministic ID of a pipeline's workflow of ``kind``: ``apply`` run twice (or on
    two machines) finds the same workflow instead of starting a second one."""
    return f"syncengine-{kind}-{pipeline}"
