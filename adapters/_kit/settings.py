"""What every adapter's settings share: the pydantic base model, and the entry-point plugin built
on it that validates a source's settings, names its secrets and builds the adapter.

An adapter package defines its settings as a subclass of ``AdapterSettings`` (types, defaults
and bounds as fields, secrets as ``SecretStr``, the rules between settings in ``problems``) and
exposes ``SettingsPlugin(<its settings>, <its builder>)`` as its ``prm_mirror.adapters`` entry
point. That model is the one validation of the CRM's settings: the engine asks the plugin when it
loads a config, and the adapter's constructor asks the same model when it is built directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from mirror.adapter import CrmAdapter
from mirror.errors import ConfigError

UNKNOWN_OPTION = "unknown option (check the spelling against config/example.toml)"


class AdapterSettings(BaseModel):
    """The base of each adapter's settings: unknown keys refused, instances frozen, secrets
    (``SecretStr`` fields) hidden from ``repr``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: ClassVar[str] = "adapter"
    """How problems name the settings (``<label>.<key>``)."""

    def problems(self) -> list[str]:
        """Every problem among the settings' values, worded as what to set (empty when
        usable); the types and bounds of single values are the fields' own."""
        return []

    def raise_problems(self) -> None:
        """Raise ``ConfigError`` listing every problem, if there is any."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)


def reveal(secret: SecretStr | None) -> str | None:
    """The plain value of ``secret`` (for the one call that sends it to the CRM)."""
    return None if secret is None else secret.get_secret_value()


M = TypeVar("M", bound=AdapterSettings)


class SettingsPlugin(Generic[M]):
    """An adapter package's plugin: its settings model and how to build its adapter from it.

    Calling the plugin is ``build`` (the form of a bare factory).
    """

    def __init__(
        self,
        model: type[M],
        make: Callable[[str, M], CrmAdapter],
        schema: Path | None = None,
    ) -> None:
        """``make(source, settings)`` builds the adapter; ``schema`` is the CRM's default
        schema file when the adapter package ships its own."""
        self.model = model
        self.make = make
        self.schema = schema

    def validate_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """Every problem of a source's settings at once: unknown keys, values of the wrong
        type or out of bounds, and the model's ``problems`` among the rest."""
        try:
            return self.model.model_validate(dict(settings)).problems()
        except ValidationError as exc:
            errors = exc.errors()
        found = [self.describe(error) for error in errors]
        bad = {str(error["loc"][0]) for error in errors if error["loc"]}
        try:
            rest = self.model.model_validate({k: v for k, v in settings.items() if k not in bad})
        except ValidationError:
            return found
        return found + [p for p in rest.problems() if not any(key in p for key in bad)]

    def secret_values(self, settings: Mapping[str, Any]) -> list[str]:
        """The values given for the model's ``SecretStr`` settings."""
        return [
            str(settings[name])
            for name, info in self.model.model_fields.items()
            if settings.get(name) and _is_secret(info.annotation)
        ]

    def schema_path(self) -> Path | None:
        """The CRM's default schema file, when the package ships one."""
        return self.schema

    def build(self, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
        """The adapter of ``source``; keys the model does not know and ``None`` values are
        left out (the engine has already reported them); ``ConfigError`` lists the rest."""
        known = {k: v for k, v in settings.items() if k in self.model.model_fields}
        try:
            model = self.model.model_validate({k: v for k, v in known.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError([self.describe(error) for error in exc.errors()]) from None
        return self.make(source, model)

    __call__ = build

    def describe(self, error: Any) -> str:
        """One pydantic error as a problem naming the setting (``<label>.<key>: …``)."""
        location = ".".join(str(part) for part in error["loc"])
        message = UNKNOWN_OPTION if error["type"] == "extra_forbidden" else error["msg"]
        return f"{self.model.label}.{location}: {message}"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())
