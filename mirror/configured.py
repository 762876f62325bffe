"""A mirror's configuration made concrete: its store, each source's adapter (found through the
``prm_mirror.adapters`` entry points), the objects' specs and the partner-slice rules.
``mirror.api.Mirror`` builds its operations on this.

Adapters are found through the ``prm_mirror.adapters`` entry-point group (each entry is a
factory ``(source_name, settings) -> CrmAdapter``), so the engine never imports a CRM client;
an app may also pass ready-made adapters to ``Mirror.open``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from mirror import redaction
from mirror.adapter import CrmAdapter
from mirror.config import MirrorConfig, load_config, secret_values
from mirror.errors import ConfigError
from mirror.leases import Leases
from mirror.portal.registrations import Registrations, RegistrationSettings
from mirror.pull.pages import PageHook
from mirror.pull.sync import Puller
from mirror.push.diff import Policy
from mirror.registry import adapter_plugin
from mirror.schema import apply_schema, load_crm_schema
from mirror.store.database import Store
from mirror.types import ObjectSpec
from mirror.visibility import column_grants
from mirror.visibility.rule_check import served_rules, validate_rules
from mirror.visibility.rules import (
    VisibilityRules,
    merge_settings,
    parse_rules,
    path_index_fields,
)
from mirror.visibility.upkeep import GrantPageHook, GrantUpkeep


class Configured:
    """The store, adapters, specs and slice rules of one mirror config, each made on first use."""

    def __init__(
        self,
        config: MirrorConfig,
        *,
        adapters: Mapping[str, CrmAdapter] | None = None,
        hooks: Iterable[PageHook] = (),
    ) -> None:
        """Open the store of ``config``; ``adapters`` stand in for the ones the config names,
        ``hooks`` run on every page a sync applies."""
        self.config = config
        redaction.register([*secret_values(config), *redaction.environment_secrets()])
        self.store = Store(
            config.store.database,
            run_lease_seconds=config.daemon.lease_seconds,
            pool=(config.store.pool_size, config.store.max_overflow),
        )
        self._adapters: dict[str, CrmAdapter] = dict(adapters or {})
        self._specs: dict[tuple[str, str], ObjectSpec] = {}
        self._rules: dict[str, VisibilityRules] = {}
        self._served: dict[str, VisibilityRules] = {}
        self._upkeeps: dict[str, GrantUpkeep] = {}
        self.hooks: list[PageHook] = list(hooks)
        column_grants.follow_added_columns(self.store, self._rules_of)

    @classmethod
    def open(
        cls,
        config: str | Path | MirrorConfig,
        *,
        adapters: Mapping[str, CrmAdapter] | None = None,
    ) -> Self:
        """Open the mirror described by a config file (or an already-loaded config)."""
        loaded = config if isinstance(config, MirrorConfig) else load_config(config)
        return cls(loaded, adapters=adapters)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()

    def adapter(self, source: str) -> CrmAdapter:
        """The adapter of ``source``, built from its config on first use."""
        if source not in self._adapters:
            settings = self._source(source)
            self._adapters[source] = build_adapter(
                settings.crm, source, settings.adapter_settings()
            )
        return self._adapters[source]

    def object_names(self, source: str) -> list[str]:
        """The objects mirrored from ``source``: the config's list, else the schema's default."""
        settings = self._source(source)
        if settings.objects:
            return list(settings.objects)
        return list(load_crm_schema(settings.crm, self.config.schemas_dir).objects)

    def spec(self, source: str, name: str, *, refresh: bool = False) -> ObjectSpec:
        """The object's spec: the CRM's describe merged with ``schemas/<crm>.toml``."""
        key = (source, name)
        if refresh or key not in self._specs:
            crm = self._source(source).crm
            described = self.adapter(source).describe(name)
            self._specs[key] = apply_schema(
                described, load_crm_schema(crm, self.config.schemas_dir)
            )
        return self._specs[key]

    def policy_of(self, source: str) -> Callable[[str, str], Policy]:
        """The conflict policy of each object field of ``source`` (``manual`` by default)."""
        policies = self._source(source).conflicts
        default = Policy(policies.get("default", "manual"))

        def policy(object_name: str, field_name: str) -> Policy:
            chosen = policies.get(f"{object_name}.{field_name}") or policies.get(object_name)
            return Policy(chosen) if chosen else default

        return policy

    def slice_rules(self, source: str | None = None) -> VisibilityRules:
        """The partner-slice rules of ``source`` as configured (its schema's defaults with the
        config's overrides), not yet checked against any schema: the sync checks them against
        what the CRM describes, ``visibility`` against what is mirrored."""
        source = source or self.default_source
        if source not in self._rules:
            settings = self._source(source)
            schema = load_crm_schema(settings.crm, self.config.schemas_dir)
            raw = merge_settings(
                {
                    k: schema.raw.get(k, {})
                    for k in ("partners", "partner_users", "slices", "fields")
                },
                settings.visibility,
            )
            self._rules[source] = parse_rules(source, raw)
        return self._rules[source]

    def grant_upkeep(self, source: str) -> GrantUpkeep:
        """The upkeep of ``source``'s grants: one per source, shared by its syncs (each
        through a page hook of its own), pushes, partner views and deal registrations."""
        if source not in self._upkeeps:
            self._upkeeps[source] = GrantUpkeep(self.store, self.slice_rules(source))
        return self._upkeeps[source]

    def visibility(self, source: str | None = None) -> VisibilityRules:
        """The partner-slice rules of ``source``, checked against the mirrored schema: what
        every partner-facing entry point serves with. ``ConfigError`` lists every problem
        (an unknown object or field, a path through a field that does not exist)."""
        source = source or self.default_source
        rules = self._served.get(source) or self.slice_rules(source)
        self._served[source] = served_rules(self.store, rules, self._known_objects(source))
        return self._served[source]

    def _known_objects(self, source: str) -> frozenset[str]:
        """Every object ``source`` may hold: its configured objects and its schema's."""
        schema = load_crm_schema(self._source(source).crm, self.config.schemas_dir)
        return frozenset({*self.object_names(source), *schema.objects, *schema.overrides})

    def _rules_of(self, source: str) -> VisibilityRules | None:
        return self.slice_rules(source) if source in self.config.sources else None

    def _schema_settings(self, source: str, section: str) -> dict[str, Any]:
        """One section of ``source``'s schema file (empty when it has none)."""
        raw = load_crm_schema(self._source(source).crm, self.config.schemas_dir).raw
        return dict(raw.get(section) or {})

    def registrations(self, source: str | None = None) -> Registrations | None:
        """Deal registration for ``source`` (``None`` when its schema configures none)."""
        source = source or self.default_source
        raw = self._schema_settings(source, "registrations")
        if not raw:
            return None
        merged = merge_settings(raw, self._source(source).registrations)
        upkeep = self.grant_upkeep(source)
        return Registrations(self.store, source, RegistrationSettings.from_raw(merged), upkeep)

    def _puller(
        self,
        source: str,
        specs: Mapping[str, ObjectSpec],
        leases: Leases | None,
        access: GrantPageHook,
    ) -> Puller:
        rules = access.rules
        described = {name: spec.field_names for name, spec in specs.items()}
        validate_rules(rules, described, self._known_objects(source))
        registrations = self.registrations(source)
        extra = [registrations.on_page] if registrations else []
        return Puller(
            self.store,
            self.adapter(source),
            prefetch_pages=self.config.sync.prefetch_pages,
            hooks=[*self.hooks, access, *extra],
            indexes=path_index_fields(rules),
            policy_of=self.policy_of(source),
            backfill_ranges=self.config.sync.backfill_ranges,
            range_min_records=self.config.sync.backfill_range_min_records,
            leases=leases,
            access=access.upkeep,
        )

    @property
    def default_source(self) -> str:
        """The only source, when there is one (else name it explicitly)."""
        if len(self.config.sources) != 1:
            raise ConfigError("several sources are configured: name the one you mean")
        return next(iter(self.config.sources))

    def _source(self, source: str) -> Any:
        try:
            return self.config.sources[source]
        except KeyError:
            known = ", ".join(self.config.sources) or "none"
            raise ConfigError(f"no source named {source!r} (configured: {known})") from None


def build_adapter(crm: str, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    """The adapter of ``crm`` (an installed adapter entry point, or one registered with
    ``register_adapter``) for ``source``."""
    return adapter_plugin(crm).build(source, dict(settings))


def process_holder() -> str:
    """This process's name as a lease holder: its host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"
