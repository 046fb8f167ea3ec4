"""The ``console:`` section of the config: the token a non-loopback bind requires, and how
often the daemon records the lag history the console charts and how long it is kept.

The token is a secret like a DSN: written as ``${VAR}``, typed ``SecretStr`` (never printed),
registered with the redactor when the config loads.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from syncengine.config.base import Model
from syncengine.config.durations import parse_duration


class ConsoleConfig(Model):
    token: SecretStr | None = Field(default=None, min_length=16)
    """Required to bind the console to anything but loopback; also required on loopback when
    set. A person signs in with it once per browser session (or sends ``Authorization:
    Bearer``). At least 16 characters, e.g. ``${SYNCENGINE_CONSOLE_TOKEN}``."""
    history_interval: Annotated[float, Field(ge=1.0, le=3600.0)] = 10.0
    """Seconds (or ``10s``, ``1m``) between the lag samples every running pipeline writes to
    the state store for the console's chart (:mod:`syncengine.runtime.laghistory`)."""
    history_keep: Annotated[float, Field(ge=60.0)] = 86400.0
    """How long lag samples are kept (``24h``); older ones are dropped as new ones are written."""

    @field_validator("history_interval", "history_keep", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)
