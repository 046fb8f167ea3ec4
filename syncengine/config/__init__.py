"""Pipeline configuration: models, loading, ``${ENV}`` interpolation, secret redaction."""

from syncengine.config.loader import load_config, parse_config
from syncengine.config.models import Config, MappingConfig, PipelineConfig

__all__ = ["Config", "MappingConfig", "PipelineConfig", "load_config", "parse_config"]
