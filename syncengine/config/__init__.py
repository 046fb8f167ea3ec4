"""Pipeline configuration: models, loading, ``${ENV}`` interpolation, secret redaction.

The names below are imported on first use, not with the package: a kind's config module
(``sources/postgres/config.py``…) imports :mod:`syncengine.config.base`, which loads this
package first; loading the models here too would build the source/target union from the
registry while that kind's config module is still half-imported (and record the kind as
broken for the rest of the process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.lazy import lazy_exports

if TYPE_CHECKING:
    from syncengine.config.loader import load_config, parse_config
    from syncengine.config.models import Config, MappingConfig, PipelineConfig

__all__ = ["Config", "MappingConfig", "PipelineConfig", "load_config", "parse_config"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Config": "syncengine.config.models",
        "MappingConfig": "syncengine.config.models",
        "PipelineConfig": "syncengine.config.models",
        "load_config": "syncengine.config.loader",
        "parse_config": "syncengine.config.loader",
    },
)
