"""Sling (slingdata.io) as a backfill baseline: ``sling run`` of one table between databases.

The ``sling`` package on PyPI is a thin wrapper that downloads the Sling binary from GitHub the
first time it runs (``sling/bin.py``): not an install, and not reachable here. The binary itself
ships inside the platform package ``sling-linux-amd64`` (the ``bench`` extra), which is what
this module runs. Where it is missing or cannot start, :func:`sling_binary` raises
:class:`SlingUnavailable` with the reason, and the scenario reports the baseline as skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from benchmarks.core import BenchmarkError
from benchmarks.measure import run_process

PACKAGE = "sling_linux_amd64"


class SlingUnavailable(BenchmarkError):
    """Sling cannot run here; the message says why (and the scenario skips the baseline)."""


def sling_binary() -> str:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise SlingUnavailable(
            f"Sling skipped: the package '{PACKAGE.replace('_', '-')}' (the Sling binary; "
            "install with `pip install -e '.[bench]'`) is not installed. The 'sling' package "
            "is not used: it downloads its binary at run time"
        )
    binary = Path(spec.origin).parent / "bin" / "sling-linux-amd64"
    if not binary.exists():
        raise SlingUnavailable(f"Sling skipped: no binary at {binary} (not Linux x86-64?)")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)  # wheels do not keep the executable bit
    try:
        subprocess.run(
            [str(binary), "--version"], check=True, capture_output=True, timeout=60, env=_env({})
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SlingUnavailable(f"Sling skipped: its binary cannot run here ({exc})") from None
    return str(binary)


def _env(connections: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLING_")}
    env.update(SLING_DISABLE_TELEMETRY="true", SLING_LOADED_AT_COLUMN="false", **connections)
    return env


def _url(dsn: str) -> str:
    """Sling's connection URL for a libpq DSN (no TLS on the throwaway cluster)."""
    parts = conninfo_to_dict(dsn)
    user = parts.get("user", "postgres")
    return f"postgresql://{user}@{parts['host']}:{parts['port']}/{parts['dbname']}?sslmode=disable"


def sling_copy(binary: str, src: str, tgt: str, table: str, timeout: float) -> float:
    """Seconds of ``sling run`` copying ``public.table`` into an empty ``tgt`` (it creates the
    table, like the engine does)."""
    run = run_process(
        [
            binary,
            "run",
            "--src-conn",
            "BENCH_SRC",
            "--src-stream",
            f"public.{table}",
            "--tgt-conn",
            "BENCH_TGT",
            "--tgt-object",
            f"public.{table}",
            "--mode",
            "full-refresh",
        ],
        env=_env({"BENCH_SRC": _url(src), "BENCH_TGT": _url(tgt)}),
        timeout=timeout,
        what="baseline Sling",
    )
    return run.seconds
