"""What a target says when cluster mode's fencing epoch refuses a commit.

Each target that can run a cluster stream keeps a pipeline's epoch in its own database and
checks it inside every commit (Postgres: :mod:`syncengine.targets.postgres.epochs`; Mongo with
transactions: :mod:`syncengine.targets.mongo.epochs`); both refuse a stale one with this error,
so logs and tests read the same words whichever target it is.
"""

from __future__ import annotations

from syncengine.errors import Fenced


def stale(pipeline: str, epoch: int, current: tuple[int, str] | None) -> Fenced:
    """The refusal of a commit under ``epoch`` when the target holds ``current`` (epoch,
    holder), or no epoch at all."""
    now = f"epoch {current[0]}, held by {current[1]}" if current else "no epoch at all"
    return Fenced(
        f"{pipeline}: commit refused: this attempt's fencing epoch {epoch} is stale "
        f"(the target now has {now}); rolled back, this attempt stops",
        hint="another worker took the pipeline over; nothing to do",
    )
