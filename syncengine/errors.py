"""One root error with its retry policy, so every caller knows what to do with a failure.

Three branches:

* :class:`RetriableError` — transient (connection lost, server restarting, serialization
  failure). The runtime backs off with jitter, reconnects and resumes from the checkpoint.
* :class:`FatalError` — a person has to change something (bad config, missing permission).
  The CLI prints one line naming the fix and exits with :attr:`SyncEngineError.exit_code`.
* :class:`RecordError` — one record cannot be mapped or applied. It goes to the dead-letter
  store with the reason and the payload; the pipeline continues (``on_error: dead_letter``).

Server error codes are mapped onto these classes in one table, in the spirit of psycopg's
``errors.py``: :data:`SQLSTATE_RULES` (Postgres), :data:`MONGO_CODE_RULES` and
:data:`MONGO_LABEL_RULES` (MongoDB). A :class:`Rule` names the class on each side, because the
same code can mean different things there (a lost connection is ``SourceUnavailable`` on one
side and ``TargetUnavailable`` on the other). Every source and target error adapter asks
:func:`sqlstate_rule` or :func:`mongo_rule` and builds the error with :meth:`Rule.error`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


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


class StateUnavailable(RetriableError):
    """A shared (Postgres) state store could not be reached (after retries the CLI exits 3)."""


class Fenced(RetriableError):
    """Cluster mode: a newer attempt took this pipeline over (its fencing epoch is higher), so
    this attempt's commit was refused and rolled back; it stops. Retriable: should the attempt
    fenced out be the one Temporal still counts on, its retry claims the pipeline anew."""


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


#: what to do about :class:`HistoryLost` (both are a resync, :mod:`syncengine.runtime.resync`)
HISTORY_LOST_HINT = (
    "with source.on_history_lost: resnapshot the pipeline copies every table again and deletes "
    "the target rows the source no longer has; with 'fail', run syncengine checkpoints reset "
    "CONFIG -p PIPELINE, and the next run does the same"
)


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


# -- the table: server error codes -> classes, per side ------------------------------------

Side = Literal["source", "target"]


@dataclass(frozen=True)
class Rule:
    """The class a server error becomes on each side, and the hint (what to do) with it."""

    source: type[SyncEngineError]
    target: type[SyncEngineError]
    source_hint: str | None = None
    target_hint: str | None = None

    def on(self, side: Side) -> type[SyncEngineError]:
        return self.source if side == "source" else self.target

    def retriable_anywhere(self) -> bool:
        """For an error no side translated: worth retrying when it is on either side."""
        return self.source.retriable or self.target.retriable

    def error(self, side: Side, message: str) -> SyncEngineError:
        """The error for ``side`` (``message`` must already be free of secrets)."""
        hint = self.source_hint if side == "source" else self.target_hint
        if _ROW_SECURITY in message:  # 42501 too, but no privilege named in the message
            hint = _ROW_SECURITY_HINT
        return self.on(side)(message, hint=hint)


#: Postgres's "query would be affected by row-level security policy for table …": the
#: engine's sessions turn ``row_security`` off (:mod:`syncengine.pgsession`) so that policies
#: fail its reads and writes instead of hiding rows from them
_ROW_SECURITY = "row-level security policy"
_ROW_SECURITY_HINT = (
    "the table's row-level security policies would hide rows from the engine: give the user "
    "BYPASSRLS (ALTER ROLE … BYPASSRLS), or let the table's owner, without FORCE ROW LEVEL "
    "SECURITY, run the engine"
)


#: transient, the connection is gone or the server is going away: reconnect and resume
UNREACHABLE = Rule(SourceUnavailable, TargetUnavailable)
#: transient on a live connection (serialization failure, deadlock, a stepped-down primary)
TRANSIENT = Rule(SourceUnavailable, RetriableError)
#: a privilege is missing. The same on both sides: a person has to grant it (the target used
#: to say FatalError for SQLSTATE 42501; PermissionProblem is a FatalError that names the fix)
_GRANT = "grant the privilege named above to the user"
PERMISSION = Rule(PermissionProblem, PermissionProblem, _GRANT, _GRANT)
#: anything the table does not name: a person has to look
FATAL = Rule(FatalError, FatalError)
#: psycopg prepares a statement its connection runs often; a pooler in transaction mode
#: hands the next transaction another server session, where that name is taken or unknown.
#: The engine's sessions hold more than that (temporary staging tables, pinned settings,
#: :mod:`syncengine.pgsession`), so the fix is a session that stays, not fewer prepares.
_POOLER_HINT = (
    "the connection goes through a pooler in transaction mode (PgBouncer's pool_mode = "
    "transaction, …), which changes the server session between transactions; connect to "
    "the database itself or through a pool in session mode"
)
POOLER = Rule(FatalError, FatalError, _POOLER_HINT, _POOLER_HINT)

#: SQLSTATE -> rule: the full five-character code first, else its two-character class.
#: https://www.postgresql.org/docs/current/errcodes-appendix.html
SQLSTATE_RULES: dict[str, Rule] = {
    "08": UNREACHABLE,  # connection exception
    "57P01": UNREACHABLE,  # admin_shutdown
    "57P02": UNREACHABLE,  # crash_shutdown
    "57P03": UNREACHABLE,  # cannot_connect_now (server starting)
    "57P05": UNREACHABLE,  # idle_session_timeout ended the connection: reconnect
    "40001": TRANSIENT,  # serialization_failure
    "40P01": TRANSIENT,  # deadlock_detected
    "53": TRANSIENT,  # insufficient resources (too many connections, disk full)
    "55006": TRANSIENT,  # object_in_use (slot active for another PID, e.g. after a restart)
    # a statement cancelled by someone else (``pg_cancel_backend``) or by a lock wait's limit
    # (``lock_timeout``): the next attempt may pass; the engine's own limits are client-side
    # and turn the server's statement limits off (:mod:`syncengine.pgsession`)
    "57014": TRANSIENT,  # query_canceled
    "55P03": TRANSIENT,  # lock_not_available
    "58": TRANSIENT,  # system error (I/O)
    # undefined_file: on a replication connection, "requested WAL segment … has already been
    # removed"; elsewhere an I/O error like the rest of class 58
    "58P01": Rule(
        HistoryLost,
        RetriableError,
        source_hint=HISTORY_LOST_HINT,
    ),
    "42501": PERMISSION,  # insufficient_privilege
    "42P05": POOLER,  # duplicate_prepared_statement: another client's session
    "26000": POOLER,  # invalid_sql_statement_name: "prepared statement … does not exist"
    "28": FATAL,  # invalid authorization (wrong password, pg_hba.conf)
    "3D": FATAL,  # invalid catalog name (database does not exist)
    # the values of some rows: the target bisects the batch and dead-letters those rows
    "22": Rule(FatalError, RecordError),  # data exception (bad value, overflow)
    "23": Rule(FatalError, RecordError),  # integrity constraint violation
    "54000": Rule(FatalError, RecordError),  # program_limit_exceeded (index row too large)
}

#: no SQLSTATE at all: the connection broke before the server answered
NO_SQLSTATE = UNREACHABLE


def sqlstate_rule(sqlstate: str | None) -> Rule:
    """The rule for a Postgres error with this SQLSTATE."""
    if not sqlstate:
        return NO_SQLSTATE
    return SQLSTATE_RULES.get(sqlstate) or SQLSTATE_RULES.get(sqlstate[:2], FATAL)


def sqlstate_is_retriable(sqlstate: str | None) -> bool:
    """Whether a Postgres error with this SQLSTATE is worth retrying (on either side)."""
    return sqlstate_rule(sqlstate).retriable_anywhere()


#: Mongo server error codes that are transient
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

#: change-stream resume failures: the token fell off the oplog (ChangeStreamHistoryLost,
#: ChangeStreamFatalError, CappedPositionLost)
MONGO_HISTORY_LOST_CODES: frozenset[int] = frozenset({286, 280, 136})

MONGO_CODE_RULES: dict[int, Rule] = {
    **dict.fromkeys(MONGO_RETRIABLE_CODES, TRANSIENT),
    **dict.fromkeys(
        MONGO_HISTORY_LOST_CODES,
        Rule(
            HistoryLost,
            FatalError,
            source_hint=HISTORY_LOST_HINT,
        ),
    ),
    # Unauthorized, AuthenticationFailed
    **dict.fromkeys(
        (13, 18),
        Rule(
            PermissionProblem,
            PermissionProblem,
            source_hint="the user needs the 'read' role on the database and 'changeStream' "
            "privileges",
            target_hint="the user needs the 'readWrite' role on the target database",
        ),
    ),
}

#: error labels the server or the driver attach to an error that a retry may cure; one set for
#: the change stream, the target's writes and its transactions alike
MONGO_LABEL_RULES: dict[str, Rule] = dict.fromkeys(
    (
        "ResumableChangeStreamError",
        "RetryableWriteError",
        "RetryableError",
        "TransientTransactionError",
    ),
    TRANSIENT,
)


def mongo_rule(code: int | None, labels: Iterable[str] = (), *, connection_lost: bool) -> Rule:
    """The rule for a MongoDB error: a lost connection (the driver's ``ConnectionFailure``,
    whatever its code) first, then the server code, then the error labels."""
    if connection_lost:
        return UNREACHABLE
    if code is not None and code in MONGO_CODE_RULES:
        return MONGO_CODE_RULES[code]
    for label in labels:
        if label in MONGO_LABEL_RULES:
            return MONGO_LABEL_RULES[label]
    return FATAL
