"""One root error with its retry policy, so every caller knows what to do with a failure.

Three branches:

* :class:`RetriableError` — transient (connection lost, server restarting, serialization
  failure). The runtime backs off with jitter, reconnects and resumes from the checkpoint.
* :class:`FatalError` — a person has to change something (bad config, missing permission).
  The CLI prints one line naming the fix and exits with :attr:`SyncEngineError.exit_code`.
* :class:`RecordError` — one record cannot be mapped or applied. It goes to the dead-letter
  store with the reason and the payload; the pipeline continues (``on_error: dead_letter``).

Server error codes (SQLSTATE, Mongo codes) are mapped onto these branches in one table each,
:data:`SQLSTATE_CLASSES` and :data:`MONGO_RETRIABLE_CODES`.
"""

from __future__ import annotations


class SyncEngineError(Exception):
    """Root of every error syncengine raises on purpose."""

    retriable: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RetriableError(SyncEngineError):
    """Transient: back off, reconnect, resume from the last checkpoint."""

    retriable = True
    exit_code = 3


class SourceUnavailable(RetriableError):
    """The source could not be reached (after retries the CLI exits 3)."""


class TargetUnavailable(RetriableError):
    """The target could not be reached (after retries the CLI exits 3)."""


class FatalError(SyncEngineError):
    """Needs a person: retrying cannot help."""


class ConfigError(FatalError):
    """The pipeline config is invalid. Carries every problem with its YAML path."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(FatalError):
    """A command was called wrongly (unknown pipeline, table or option value)."""

    exit_code = 2


class PermissionProblem(FatalError):
    """The configured user lacks a privilege; the message names the GRANT or setting."""


class LockHeld(FatalError):
    """Another syncengine process holds the pipeline lock (daemon, sync or backfill)."""


class Interrupted(FatalError):
    """SIGINT/SIGTERM stopped a one-shot job between batches; what it committed stays."""


class HistoryLost(FatalError):
    """The stored source position is no longer available (WAL recycled, oplog rolled over)."""


class DecodeError(FatalError):
    """Wire bytes that cannot be decoded. Names the offset so the bytes can be inspected."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class RecordError(SyncEngineError):
    """One record cannot be mapped or applied; it is dead-lettered, the rest continues."""


class UnknownPlugin(ConfigError):
    """A strategy, source or target name that is not registered."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


# SQLSTATE class (first two characters) or full code -> retriable?
# https://www.postgresql.org/docs/current/errcodes-appendix.html
SQLSTATE_CLASSES: dict[str, bool] = {
    "08": True,  # connection exception
    "40001": True,  # serialization_failure
    "40P01": True,  # deadlock_detected
    "53": True,  # insufficient resources (too many connections, disk full)
    "55006": True,  # object_in_use (slot active for another PID, e.g. after a restart)
    "57P01": True,  # admin_shutdown
    "57P02": True,  # crash_shutdown
    "57P03": True,  # cannot_connect_now (server starting)
    "58": True,  # system error (I/O)
    "42501": False,  # insufficient_privilege
    "28": False,  # invalid authorization
    "3D": False,  # invalid catalog name (database does not exist)
}


def sqlstate_is_retriable(sqlstate: str | None) -> bool:
    """Whether a Postgres error with this SQLSTATE is worth retrying."""
    if not sqlstate:
        return True  # no SQLSTATE: the connection broke before the server answered
    if sqlstate in SQLSTATE_CLASSES:
        return SQLSTATE_CLASSES[sqlstate]
    return SQLSTATE_CLASSES.get(sqlstate[:2], False)


# Mongo server error codes that are transient (in addition to the driver's own
# ConnectionFailure / "RetryableWriteError" labels).
MONGO_RETRIABLE_CODES: frozenset[int] = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        112,  # WriteConflict
        251,  # NoSuchTransaction
    }
)

# Change-stream resume failures: the token fell off the oplog.
MONGO_HISTORY_LOST_CODES: frozenset[int] = frozenset({286, 280, 136})
