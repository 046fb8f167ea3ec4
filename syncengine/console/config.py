"""The ``console:`` section of the config: the token a non-loopback bind requires.

The token is a secret like a DSN: written as ``${VAR}``, typed ``SecretStr`` (never printed),
registered with the redactor when the config loads.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from syncengine.config.base import Model


class ConsoleConfig(Model):
    token: SecretStr | None = Field(default=None, min_length=16)
    """Required to bind the console to anything but loopback; also required on loopback when
    set. A person signs in with it once per browser session (or sends ``Authorization:
    Bearer``). At least 16 characters, e.g. ``${SYNCENGINE_CONSOLE_TOKEN}``."""
