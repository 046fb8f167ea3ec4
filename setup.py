"""Package layout: `strategies/` and `mappings/` live at the top of the repository (see
DESIGN.md) but install as `syncengine.strategies` and `syncengine.mappings`, so they never
claim generic top-level import names. pyproject.toml cannot compute this list; setup.py does.
"""

from setuptools import find_packages, setup


def _mounted(folder: str, prefix: str) -> list[str]:
    found = find_packages(include=[folder, f"{folder}.*"])
    return [prefix + name[len(folder) :] for name in found]


packages = find_packages(include=["syncengine", "syncengine.*"])
packages += _mounted("strategies", "syncengine.strategies")
packages += _mounted("mappings", "syncengine.mappings")

setup(
    packages=packages,
    package_dir={
        "syncengine": "syncengine",
        "syncengine.strategies": "strategies",
        "syncengine.mappings": "mappings",
    },
    # the console's pages and its one script and style ship inside the package (no CDN)
    package_data={"syncengine.console": ["templates/*.html", "static/*.js", "static/*.css"]},
)
