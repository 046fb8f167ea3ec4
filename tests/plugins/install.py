"""Install a test plugin package (tests/plugins/<name>) into a folder, not the shared venv:
a process with that folder on its path finds the plugin through its entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def import_package(folder: str, package: str) -> ModuleType:
    """Import ``tests/plugins/<folder>/<package>`` in this process without putting its folder
    on ``sys.path``: the folder may hold the package's build metadata, which would register
    its entry points for every later registry lookup in this process."""
    if package in sys.modules:
        return sys.modules[package]
    root = PLUGINS / folder / package
    spec = importlib.util.spec_from_file_location(
        package, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return module
