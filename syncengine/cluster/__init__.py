"""Cluster mode: pipelines and backfill chunks run as Temporal workflows and activities on any
number of stateless workers (``syncengine worker``), started by ``syncengine apply``.

An extra (``pip install 'syncengine[cluster]'``): only the modules of this package import
``temporalio`` (this one does not), and only the cluster commands import them, so the embedded
mode never loads it. What works today
and what is planned: docs/cluster.md.
"""

from __future__ import annotations

import importlib
import os
import socket
from types import ModuleType

from syncengine.errors import RetriableError, UsageError

EXTRA_HINT = "install the cluster extra: pip install 'syncengine[cluster]'"


class ClusterUnavailable(RetriableError):
    """The Temporal service could not be reached (the CLI exits 3)."""


def require_temporal() -> ModuleType:
    """The Temporal SDK, or a usage error that names the extra to install."""
    try:
        return importlib.import_module("temporalio")
    except ImportError:
        raise UsageError("cluster mode needs the Temporal SDK", hint=EXTRA_HINT) from None


def identity() -> str:
    """How this process appears in Temporal (workflow histories, pending activities) and in
    the fencing epochs it claims."""
    return f"{os.getpid()}@{socket.gethostname()}"
