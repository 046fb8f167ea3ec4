"""Install a test plugin package (tests/plugins/<name>) into a folder, not the shared venv:
a process with that folder on its path finds the plugin through its entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent


def install(name: str, site: Path) -> Path:
    """``pip install --target site tests/plugins/<name>``; returns ``site``."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
               str(site), str(PLUGINS / name)]  # fmt: skip
    # with a recent setuptools in the venv no download is needed; otherwise pip fetches it
    fast = subprocess.run([*command, "--no-build-isolation"], capture_output=True, timeout=300)
    if fast.returncode != 0:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    return site
