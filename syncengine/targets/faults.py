"""Test-only fault injection: stop a target between two steps of an apply.

The conformance and crash tests need to kill an apply at a precise instant (after the data,
before the checkpoint) to prove that a rerun loses nothing and duplicates nothing. Targets
call :func:`fault_point` between their steps; it does nothing unless the environment variable
``SYNCENGINE_FAULT`` names that step::

    SYNCENGINE_FAULT=postgres.before_commit          # raise SimulatedCrash
    SYNCENGINE_FAULT=postgres.before_commit:kill     # SIGKILL this process (no cleanup at all)
    SYNCENGINE_FAULT=mongo.before_commit:stop        # SIGSTOP it there, once (a paused worker)

Points: ``<target>.after_stage``, ``<target>.after_data``, ``<target>.after_shadow``,
``<target>.before_commit``, ``<target>.after_commit`` (not every target has every point;
see docs/targets.md), ``mongo.before_transaction`` (a group read back and decided, its
transaction not started), ``resync.before_reset`` (a resync request stored, the pipeline's
positions not yet forgotten: runtime/resync.py) and ``captured.before_note`` (the copies of
tables the stream missed asked for, the captured tables not yet noted: runtime/captured.py).
Reading one environment variable per step costs nothing measurable.
"""

from __future__ import annotations

import os
import signal

ENV = "SYNCENGINE_FAULT"


class SimulatedCrash(BaseException):
    """Raised at an armed fault point. A BaseException, so no ``except Exception`` hides it."""


def fault_point(name: str) -> None:
    armed = os.environ.get(ENV)
    if not armed:
        return
    point, _, action = armed.partition(":")
    if point != name:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":  # the process stops inside the step; whoever SIGCONTs it goes on
        del os.environ[ENV]
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise SimulatedCrash(name)
