"""The one table from server error codes to syncengine errors (syncengine.errors), and the
adapters every source and target path reads it through. No server: driver exceptions are
built the way the drivers build them from a server reply."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors
from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

from syncengine.errors import (
    MONGO_LABEL_RULES,
    MONGO_RETRIABLE_CODES,
    FatalError,
    HistoryLost,
    PermissionProblem,
    RecordError,
    RetriableError,
    SourceUnavailable,
    SyncEngineError,
    TargetUnavailable,
    mongo_rule,
    sqlstate_is_retriable,
    sqlstate_rule,
)
from syncengine.runtime.classify import is_transient
from syncengine.sources.mongo.errors import map_error as mongo_source_error
from syncengine.sources.postgres.pgerrors import map_error as pg_source_error
from syncengine.targets.mongo.bulk import translate as mongo_target_error
from syncengine.targets.postgres.errors import is_record_error
from syncengine.targets.postgres.errors import translate as pg_target_error

# SQLSTATE -> (class on the source side, class on the target side)
SQLSTATES = [
    (None, SourceUnavailable, TargetUnavailable),  # no answer: the connection broke
    ("08006", SourceUnavailable, TargetUnavailable),  # connection_failure (class 08)
    ("57P01", SourceUnavailable, TargetUnavailable),  # admin_shutdown
    ("57P03", SourceUnavailable, TargetUnavailable),  # cannot_connect_now
    ("57P05", SourceUnavailable, TargetUnavailable),  # idle_session_timeout
    ("57P04", FatalError, FatalError),  # database_dropped: not a restart
    ("40001", SourceUnavailable, RetriableError),  # serialization_failure
    ("40P01", SourceUnavailable, RetriableError),  # deadlock_detected
    ("53300", SourceUnavailable, RetriableError),  # too_many_connections (class 53)
    ("55006", SourceUnavailable, RetriableError),  # object_in_use (an active slot)
    ("57014", SourceUnavailable, RetriableError),  # query_canceled (pg_cancel_backend)
    ("55P03", SourceUnavailable, RetriableError),  # lock_not_available (lock_timeout)
    ("58030", SourceUnavailable, RetriableError),  # io_error (class 58)
    ("58P01", HistoryLost, RetriableError),  # WAL removed / undefined_file: the full code wins
    ("42501", PermissionProblem, PermissionProblem),  # the same on both sides
    ("28P01", FatalError, FatalError),  # invalid_password
    ("3D000", FatalError, FatalError),  # invalid_catalog_name
    ("22003", FatalError, RecordError),  # numeric_value_out_of_range: some rows' values
    ("23505", FatalError, RecordError),  # unique_violation
    ("54000", FatalError, RecordError),  # program_limit_exceeded (index row too large)
    ("54001", FatalError, FatalError),  # statement_too_complex: the statement, not rows
    ("42P01", FatalError, FatalError),  # undefined_table
    ("42P05", FatalError, FatalError),  # duplicate_prepared_statement: a pooler's session
    ("26000", FatalError, FatalError),  # prepared statement does not exist: the same
]


def _pg(sqlstate: str, text: str = "boom") -> psycopg.Error:
    return pg_errors.lookup(sqlstate)(text)


@pytest.mark.parametrize(("sqlstate", "source", "target"), SQLSTATES)
def test_sqlstate_rule_names_one_class_per_side(sqlstate, source, target):
    rule = sqlstate_rule(sqlstate)
    assert (rule.on("source"), rule.on("target")) == (source, target)
    assert sqlstate_is_retriable(sqlstate) == (source.retriable or target.retriable)


@pytest.mark.parametrize(("sqlstate", "source", "target"), [s for s in SQLSTATES if s[0]])
def test_postgres_adapters_raise_the_table_class(sqlstate, source, target):
    assert type(pg_source_error(_pg(sqlstate), "reading")) is source
    assert type(pg_target_error(_pg(sqlstate), "apply")) is target
    assert is_record_error(_pg(sqlstate)) == (target is RecordError)


def test_insufficient_privilege_is_a_permission_problem_on_both_sides_with_the_fix():
    # The decision for the inconsistency of issue 18: the target used to call 42501 a bare
    # FatalError. A PermissionProblem is a FatalError (no retry, exit 1) naming the fix.
    for error in (pg_source_error(_pg("42501"), "x"), pg_target_error(_pg("42501"), "x")):
        assert isinstance(error, PermissionProblem) and isinstance(error, FatalError)
        assert not error.retriable and error.exit_code == 1
        assert "grant the privilege named above" in str(error)


def test_hints_belong_to_their_side():
    wal = "requested WAL segment 000000010000000000000001 has already been removed"
    lost = pg_source_error(_pg("58P01", wal), "streaming")
    assert isinstance(lost, HistoryLost) and "checkpoints reset" in str(lost)
    assert "on_history_lost: resnapshot" in str(lost)
    # the target's undefined_file is an I/O error like the rest of class 58, without that hint
    io = pg_target_error(_pg("58P01", "could not open file"), "apply")
    assert type(io) is RetriableError and "checkpoints reset" not in str(io)
    # the text alone decides when the server sends no code
    assert isinstance(pg_source_error(psycopg.OperationalError(wal), "x"), HistoryLost)
    # START_REPLICATION of a slot the server invalidated (max_slot_wal_keep_size)
    invalid = 'cannot read from logical replication slot "s"'
    assert isinstance(pg_source_error(_pg("55000", invalid), "streaming"), HistoryLost)


def test_postgres_adapters_keep_secrets_out_and_pass_engine_errors_through():
    leaked = pg_source_error(psycopg.OperationalError("postgresql://u:hunter2@h/db"), "x")
    assert "hunter2" not in str(leaked) and isinstance(leaked, SourceUnavailable)
    assert "hunter2" not in str(pg_target_error(_pg("42501", "password=hunter2"), "x"))
    own = RetriableError("mine")
    assert pg_source_error(own, "x") is own


def _mongo(code: int | None = None, labels: tuple[str, ...] = ()) -> PyMongoError:
    return OperationFailure("boom", code=code, details={"errorLabels": list(labels)})


@pytest.mark.parametrize("label", sorted(MONGO_LABEL_RULES))
def test_every_mongo_path_reads_the_same_retry_labels(label):
    # issue 18: the source, the target and the daemon each checked a different label list
    failure = _mongo(code=2, labels=(label,))  # code 2 (BadValue) alone would be fatal
    assert type(mongo_source_error(failure, "reading")) is SourceUnavailable
    assert type(mongo_target_error(failure, "apply")) is RetriableError
    assert is_transient(failure)
    assert not is_transient(_mongo(code=2))


MONGO_CODES = [
    (189, SourceUnavailable, RetriableError),  # PrimarySteppedDown
    (112, SourceUnavailable, RetriableError),  # WriteConflict
    (286, HistoryLost, FatalError),  # ChangeStreamHistoryLost
    (136, HistoryLost, FatalError),  # CappedPositionLost
    (13, PermissionProblem, PermissionProblem),  # Unauthorized
    (18, PermissionProblem, PermissionProblem),  # AuthenticationFailed
    (2, FatalError, FatalError),  # BadValue: not in the table
]


@pytest.mark.parametrize(("code", "source", "target"), MONGO_CODES)
def test_mongo_codes_name_one_class_per_side(code, source, target):
    rule = mongo_rule(code, connection_lost=False)
    assert (rule.on("source"), rule.on("target")) == (source, target)
    assert type(mongo_source_error(_mongo(code), "reading")) is source
    assert type(mongo_target_error(_mongo(code), "apply")) is target
    assert is_transient(_mongo(code)) == (source.retriable or target.retriable)


def test_a_lost_mongo_connection_is_unavailable_whatever_its_code():
    # the target checked the driver's ConnectionFailure before codes: a not-primary error
    # (an AutoReconnect) trips the circuit breaker as TargetUnavailable
    assert mongo_rule(10107, connection_lost=True).on("target") is TargetUnavailable
    assert 10107 in MONGO_RETRIABLE_CODES
    down = AutoReconnect("mongodb://user:hunter2@host/ unreachable")
    assert type(mongo_source_error(down, "reading")) is SourceUnavailable
    target = mongo_target_error(down, "apply")
    assert type(target) is TargetUnavailable and "hunter2" not in str(target)
    assert is_transient(down)


def test_mongo_messages_name_what_failed_and_how_to_fix_it():
    lost = mongo_source_error(_mongo(286), "reading shop")
    assert "cannot resume from the checkpoint" in str(lost) and "resnapshot" in str(lost)
    assert "(code 2)" in str(mongo_source_error(_mongo(2), "reading shop"))
    assert "'readWrite'" in str(mongo_target_error(_mongo(13), "apply"))
    assert "'changeStream'" in str(mongo_source_error(_mongo(13), "reading"))


def test_an_untranslated_driver_error_is_retried_when_either_side_would_retry_it():
    assert is_transient(_pg("58P01"))  # a retriable I/O error on the target side
    assert is_transient(_pg("40001")) and is_transient(psycopg.OperationalError("gone"))
    assert not is_transient(_pg("42501")) and not is_transient(_pg("23505"))
    assert is_transient(SourceUnavailable("x")) and not is_transient(FatalError("x"))


def test_every_table_class_takes_a_message_and_a_hint():
    from syncengine import errors

    rules = [*errors.SQLSTATE_RULES.values(), *errors.MONGO_CODE_RULES.values()]
    rules += [*errors.MONGO_LABEL_RULES.values(), errors.NO_SQLSTATE, errors.FATAL]
    for rule in rules:
        for side in ("source", "target"):
            error = rule.error(side, "m")
            assert isinstance(error, SyncEngineError) and str(error).startswith("m")


def test_row_level_security_names_bypassrls_on_both_sides():
    text = 'query would be affected by row-level security policy for table "items"'
    source = pg_source_error(_pg("42501", text), "reading a snapshot chunk")
    target = pg_target_error(_pg("42501", text), "applying")
    for error in (source, target):
        assert isinstance(error, PermissionProblem)
        assert "BYPASSRLS" in (error.hint or "")
    other = pg_source_error(_pg("42501", "permission denied for table items"), "reading")
    assert "BYPASSRLS" not in (other.hint or "")


def test_a_transaction_mode_pooler_is_named_with_the_fix_on_both_sides():
    """What psycopg's prepared statements meet behind PgBouncer in transaction mode."""
    taken = _pg("42P05", 'prepared statement "_pg3_0" already exists')
    unknown = _pg("26000", 'prepared statement "_pg3_1" does not exist')
    for error in (pg_source_error(taken, "x"), pg_target_error(unknown, "apply")):
        assert type(error) is FatalError and "session mode" in (error.hint or "")
