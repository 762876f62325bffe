"""The CRMs the engine can mirror: the installed adapter plugins, and those registered by hand.

An adapter package makes its CRM known through an entry point in the ``prm_mirror.adapters``
group (``<crm> = "package.module:plugin"``), or an application (a test) calls
``register_adapter``. Either way the engine meets the CRM only as an ``AdapterPlugin``: an
object that checks the CRM's own ``[sources.<name>]`` settings, tells which of them are secret,
may bring its schema file, and builds the adapter. The engine itself never names a CRM.

A plain factory ``(source, settings) -> CrmAdapter`` is accepted as a plugin too: its settings
are then checked only when it builds, and it brings no schema of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mirror.adapter import CrmAdapter
from mirror.errors import ConfigError

ADAPTER_GROUP = "prm_mirror.adapters"

AdapterFactory = Callable[[str, Mapping[str, Any]], CrmAdapter]
"""A bare factory: the source's name and its CRM settings in, an adapter out."""


@runtime_checkable
class AdapterPlugin(Protocol):
    """What an adapter package offers the engine for its CRM.

    ``settings`` is always the CRM's part of one ``[sources.<name>]`` table: every key but the
    engine's own (``crm``, ``objects``, ``visibility``, ``registrations``, ``conflicts``),
    with ``${VAR}`` references already resolved.
    """

    def validate_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """Every problem of ``settings`` at once, each naming the setting it is about (empty
        when they are usable); never the value of a secret."""
        ...

    def secret_values(self, settings: Mapping[str, Any]) -> list[str]:
        """The values in ``settings`` that logs and printed errors must never show."""
        ...

    def schema_path(self) -> Path | None:
        """The CRM's default schema file (``None``: the engine's shipped ``<crm>.toml``)."""
        ...

    def build(self, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
        """The adapter of source ``source``; ``ConfigError`` when ``settings`` are unusable."""
        ...


class FactoryPlugin:
    """A bare adapter factory seen as a plugin: nothing checked before it builds."""

    def __init__(self, factory: AdapterFactory) -> None:
        """Wrap ``factory``."""
        self.factory = factory

    def validate_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """Nothing is known of the settings: no problem."""
        return []

    def secret_values(self, settings: Mapping[str, Any]) -> list[str]:
        """Nothing is known of the settings: no secret beyond the engine's own guesses."""
        return []

    def schema_path(self) -> Path | None:
        """No schema of its own."""
        return None

    def build(self, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
        """What the factory builds."""
        return self.factory(source, dict(settings))


_registered: dict[str, AdapterPlugin] = {}


def register_adapter(name: str, plugin: AdapterPlugin | AdapterFactory) -> None:
    """Make CRM ``name`` known to this process without an entry point (``crm = name`` in a
    source then uses ``plugin``); it takes precedence over an installed plugin of that name."""
    _registered[name] = as_plugin(plugin)


def unregister_adapter(name: str) -> None:
    """Forget a CRM that ``register_adapter`` made known (installed plugins stay)."""
    _registered.pop(name, None)


def installed_crms() -> list[str]:
    """The names of every CRM this process can mirror, sorted."""
    return sorted({*_entry_points(), *_registered})


def find_plugin(crm: str) -> AdapterPlugin | None:
    """The plugin of ``crm``, or ``None`` when no adapter for it is installed or registered."""
    if crm in _registered:
        return _registered[crm]
    return _load(crm) if crm in _entry_points() else None


def adapter_plugin(crm: str) -> AdapterPlugin:
    """The plugin of ``crm``; ``ConfigError`` naming the installed CRMs when there is none."""
    plugin = find_plugin(crm)
    if plugin is None:
        raise ConfigError(unknown_crm(crm))
    return plugin


def unknown_crm(crm: str) -> str:
    """The problem of a source whose ``crm`` no installed adapter serves."""
    available = ", ".join(installed_crms()) or "none installed"
    return f"no adapter for CRM {crm!r} (available: {available})"


def as_plugin(candidate: AdapterPlugin | AdapterFactory) -> AdapterPlugin:
    """``candidate`` itself when it is a plugin, else the bare factory wrapped as one."""
    if isinstance(candidate, AdapterPlugin):
        return candidate
    return FactoryPlugin(candidate)


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=ADAPTER_GROUP)}


@cache
def _load(crm: str) -> AdapterPlugin:
    return as_plugin(_entry_points()[crm].load())
