"""The ``cluster:`` section of the config: where the Temporal service is that cluster mode
runs on (``syncengine worker`` / ``syncengine apply``, docs/cluster.md).

Only the model lives here, with no Temporal import: the embedded mode loads every config and
must not need the ``cluster`` extra. Without the section nothing changes; with it, the
cluster commands know which service, namespace and task queue to use.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from syncengine.config.base import Model
from syncengine.config.durations import parse_duration

#: ``host:port`` (a name or an IPv4 address; ``[v6]:port`` for IPv6)
ADDRESS = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
#: Temporal's own rule for namespace names
NAMESPACE = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$"


class ClusterConfig(Model):
    engine: Literal["temporal"]
    """The workflow engine cluster mode runs on; only ``temporal`` exists."""
    address: str = "localhost:7233"
    """The Temporal frontend, ``host:port``."""
    namespace: str = "default"
    task_queue: Annotated[str, Field(min_length=1, max_length=200)] = "syncengine"
    """The task queue workers poll and ``apply`` starts workflows on."""
    heartbeat: Annotated[float, Field(ge=1.0, le=3600.0)] = 30.0
    """A chunk activity whose worker has not heartbeated for this long (``30s``) is given to
    another worker; the worker heartbeats every third of it. A pipeline's stream likewise."""
    stream_slice: Annotated[float, Field(ge=10.0, le=7 * 86400.0)] = 3600.0
    """A pipeline's stream activity ends after this long (``1h``) and its workflow continues
    as new: Temporal's history stays short, and the next activity (maybe on another worker)
    claims the pipeline anew and resumes from the checkpoint."""
    snapshot_in_flight: Annotated[int, Field(ge=0, le=64)] = 0
    """``0`` (the default): a new pipeline's initial snapshot is copied by its first stream
    attempt on one worker, the embedded backfill's fast path. ``N``: it is copied chunk by
    chunk on any worker, ``N`` chunks at once across all workers, each reconciled by a
    watermark window through a temporary replication slot (count them against the source's
    ``max_replication_slots`` and ``max_wal_senders``); per worker that path is about 4x
    slower on one machine (benchmark ``cluster_snapshot``), so it pays off only when one
    worker's read is the limit and the target is not.
    """

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not re.match(ADDRESS, value) or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
            raise ValueError(f"'{value}' is not host:port (e.g. localhost:7233)")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.match(NAMESPACE, value):
            raise ValueError(
                f"'{value}' is not a Temporal namespace (2-255 letters, digits, '.', '_', '-')"
            )
        return value

    @field_validator("heartbeat", "stream_slice", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)
