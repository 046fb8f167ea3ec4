"""The ``fanout:`` section of a pipeline: one reader, several targets, through NATS JetStream.

Only the model and the split live here, with no NATS import: every command loads the config,
and the embedded mode must not need the ``cluster`` extra. A fan-out pipeline is split when the
config loads (:func:`split_fanout`, like a two-way pipeline's directions) into pipelines the
rest of the engine runs as it runs any other:

* ``<name>``: the reader. Its source is the configured one; what it applies to is the stream
  (:mod:`syncengine.cluster.fanout.publisher`), so its checkpoint is stored there.
* ``<name>.<target>``: one per target (``target`` for the pipeline's own ``target:``, then each
  of ``fanout.targets``). Its source is the stream (:mod:`syncengine.cluster.fanout.consumer`),
  its target, mappings and conflict strategy are the pipeline's; it commits its stream position
  with its data, at its own pace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator

from syncengine.config.base import Model, TargetConfigBase
from syncengine.config.durations import parse_duration
from syncengine.config.kinds import RegisteredKinds
from syncengine.plugins import TARGETS, target_factory

if TYPE_CHECKING:
    from syncengine.config.models import Config, PipelineConfig

#: ``nats://host:port`` (``tls://`` too; user:password@ allowed, registered as a secret)
SERVER = r"^(nats|tls)://([^@/\s]+@)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$"
#: JetStream stream names: no dots, spaces, wildcards or path separators
STREAM = r"^[A-Za-z0-9_-]{1,200}$"
TARGET_NAME = r"^[a-z0-9_]+$"
#: the name the pipeline's own ``target:`` consumes under (``<pipeline>.target``)
MAIN_TARGET = "target"

FanoutTarget = Annotated[TargetConfigBase, RegisteredKinds(TARGETS, target_factory)]


class FanoutConfig(Model):
    engine: Literal["nats"]
    """The broker fan-out runs on; only ``nats`` (JetStream) exists."""
    servers: Annotated[list[str], Field(min_length=1)]
    """NATS servers of one cluster, ``nats://host:port``; the client fails over among them."""
    partitions: Annotated[int, Field(ge=1, le=1024)] = 1
    """Subjects the changes are spread over by a hash of their key (one key, one partition:
    its changes stay in order). Fixed once the stream exists."""
    stream: Annotated[str, Field(pattern=STREAM)] | None = None
    """JetStream stream name; default ``syncengine_<pipeline>``."""
    replicas: Annotated[int, Field(ge=1, le=5)] = 1
    """Copies JetStream keeps of each message (3 on a three-node cluster survives a lost node)."""
    max_age: float = 7 * 86400.0
    """How long the stream keeps changes (``7d``): a target stopped longer than this cannot
    catch up from the stream and must be backfilled again. JetStream's retention is what lets
    a slow target lag without holding back the source or the other targets."""
    duplicate_window: float = 120.0
    """JetStream drops a publish whose message ID it stored within this window (``2m``): a
    reader restarted after a crash re-publishing the same batch stores it once."""
    targets: dict[Annotated[str, Field(pattern=TARGET_NAME)], FanoutTarget] = Field(
        default_factory=dict
    )
    """More targets, by name, besides the pipeline's ``target:``; each consumes the stream on
    its own (``<pipeline>.<name>``)."""

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for server in value:
            if not re.match(SERVER, server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536:
                raise ValueError(
                    f"'{server}' is not a NATS server URL (nats://host:port)"
                )  # the password, if any, is registered as a secret before validation
        return value

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetConfigBase]) -> dict[str, TargetConfigBase]:
        if MAIN_TARGET in value:
            raise ValueError(f"'{MAIN_TARGET}' names the pipeline's own target: pick another name")
        return value

    @field_validator("max_age", "duplicate_window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)

    def stream_name(self, pipeline: str) -> str:
        return self.stream or f"syncengine_{pipeline}"


def consumer_name(pipeline: str, target: str) -> str:
    """The pipeline that applies ``pipeline``'s stream to one target: ``orders.docs``."""
    return f"{pipeline}.{target}"


def fanout_role(name: str) -> str | None:
    """The target a split fan-out pipeline consumes for (None: the reader)."""
    return name.split(".", 1)[1] if "." in name else None


def check_fanout(config: Config) -> list[str]:
    """What the split cannot make sense of, with YAML paths."""
    problems = []
    for name, spec in config.pipelines.items():
        if spec.fanout is not None and spec.two_way:
            problems.append(
                f"pipelines.{name}.fanout: a two-way pipeline cannot fan out (its directions "
                "read and write the same two databases)"
            )
    return problems


def split_fanout(config: Config) -> Config:
    """``config`` with each fan-out pipeline followed by one consumer pipeline per target."""
    pipelines: dict[str, PipelineConfig] = {}
    for name, spec in config.pipelines.items():
        pipelines[name] = spec
        if spec.fanout is None or "." in name:
            continue
        targets = {MAIN_TARGET: spec.target, **spec.fanout.targets}
        for target, target_config in targets.items():
            pipelines[consumer_name(name, target)] = spec.model_copy(
                update={"target": target_config}
            )
    return config.model_copy(update={"pipelines": pipelines})
