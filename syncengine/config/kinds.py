"""The ``source:`` / ``target:`` model as a tagged union of the kinds in a registry.

The union is built when the pipeline model's schema is (first use), from every name the
registry knows (built-ins, entry points, in-process registrations), each choice being that
kind's config model. So a kind installed from another package is validated exactly like a
built-in: unknown keys, missing fields and bad values are reported with their YAML path, and an
unknown ``type:`` gets "did you mean" from the same registry (config/loader.py). A registered
kind that cannot be loaded fails only the configs that use it, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from syncengine.errors import UnknownPlugin
from syncengine.plugins import Registry


@dataclass(frozen=True)
class RegisteredKinds:
    """``Annotated[SourceConfigBase, RegisteredKinds(SOURCES, source_factory)]``."""

    registry: Registry
    #: name → the kind's factory (its ``config`` is the model), checked by the registry
    factory: Callable[[str], Any]

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        choices: dict[Any, CoreSchema] = {}
        for name in self.registry.names():
            try:
                model = self.factory(name).config
            except UnknownPlugin as exc:
                choices[name] = _always_fails(exc.message)
                continue
            choices[name] = handler.generate_schema(model)
        return core_schema.tagged_union_schema(choices, discriminator="type")


def _always_fails(reason: str) -> CoreSchema:
    def fail(value: Any) -> NoReturn:
        raise ValueError(f"type: {reason}")  # the loader puts it at the `type:` path

    return core_schema.no_info_plain_validator_function(fail)
