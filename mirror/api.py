"""``Mirror``: the one object an embedding app, the CLI and the daemon open.

Adapters are found through the ``prm_mirror.adapters`` entry-point group (each entry is a
factory ``(source_name, settings) -> CrmAdapter``), so the engine never imports a CRM client;
an app may also pass ready-made adapters to ``Mirror.open``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mirror.adapter import CrmAdapter
from mirror.config import MirrorConfig, load_config
from mirror.errors import ConfigError
from mirror.pages import PageHook
from mirror.schema import apply_schema, load_crm_schema
from mirror.store import Store
from mirror.sync import ProgressCallback, Puller, RunResult
from mirror.tables import mirror_rejects, mirror_runs
from mirror.types import ObjectSpec

log = logging.getLogger("prm_mirror")
ADAPTER_GROUP = "prm_mirror.adapters"


@dataclass(frozen=True)
class ObjectStatus:
    """Where one mirrored object stands."""

    source: str
    object: str
    phase: str | None
    cursor: str | None
    rows: int
    deleted: int
    rejects: int
    last_run_status: str | None
    last_run_at: datetime | None
    last_error: str | None


class Mirror:
    """A configured mirror: its store, its CRM sources and the operations on them."""

    def __init__(
        self,
        config: MirrorConfig,
        *,
        adapters: Mapping[str, CrmAdapter] | None = None,
        hooks: Iterable[PageHook] = (),
    ) -> None:
        self.config = config
        self.store = Store(config.store.database)
        self._adapters: dict[str, CrmAdapter] = dict(adapters or {})
        self._specs: dict[tuple[str, str], ObjectSpec] = {}
        self.hooks: list[PageHook] = list(hooks)

    @classmethod
    def open(
        cls,
        config: str | Path | MirrorConfig,
        *,
        adapters: Mapping[str, CrmAdapter] | None = None,
    ) -> Mirror:
        """Open the mirror described by a config file (or an already-loaded config)."""
        loaded = config if isinstance(config, MirrorConfig) else load_config(config)
        return cls(loaded, adapters=adapters)

    def __enter__(self) -> Mirror:
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
            self._adapters[source] = _build_adapter(
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

    def check(self) -> dict[str, str | None]:
        """Reach every source; maps source name to ``None`` (fine) or the error message."""
        results: dict[str, str | None] = {}
        for source in self.config.sources:
            try:
                self.adapter(source).check()
                results[source] = None
            except Exception as exc:
                results[source] = str(exc)
        return results

    def sync(
        self,
        objects: Iterable[str] | None = None,
        *,
        sources: Iterable[str] | None = None,
        restart: bool = False,
        progress: ProgressCallback | None = None,
    ) -> list[RunResult]:
        """Bring objects up to date (backfilling those never synced); one run per object."""
        results = []
        for source in sources or self.config.sources:
            puller = Puller(
                self.store,
                self.adapter(source),
                prefetch_pages=self.config.sync.prefetch_pages,
                hooks=self.hooks,
            )
            for name in objects or self.object_names(source):
                spec = self.spec(source, name, refresh=True)
                results.append(puller.sync_object(spec, restart=restart, progress=progress))
        return results

    def backfill(
        self,
        objects: Iterable[str] | None = None,
        *,
        restart: bool = False,
        progress: ProgressCallback | None = None,
    ) -> list[RunResult]:
        """Backfill objects: resume an interrupted backfill, or (``restart``) read all anew."""
        return self.sync(objects, restart=restart, progress=progress)

    def sweep(self, objects: Iterable[str] | None = None) -> dict[str, int]:
        """Run the delete sweep: records the CRM no longer has are marked deleted."""
        swept: dict[str, int] = {}
        for source in self.config.sources:
            puller = Puller(self.store, self.adapter(source), hooks=self.hooks)
            for name in objects or self.object_names(source):
                mirrored = self.store.prepare_object(self.spec(source, name, refresh=True))
                swept[f"{source}.{name}"] = puller.sweep(mirrored)
        return swept

    def status(self) -> list[ObjectStatus]:
        """Per mirrored object: phase, cursor, row counts, rejects and the last run."""
        statuses = []
        for source, name in self.store.objects():
            mirrored = self.store.mirrored(source, name)
            checkpoint = self.store.load_checkpoint(source, name)
            total = self.store.count(mirrored.table, include_deleted=True)
            live = self.store.count(mirrored.table)
            last = self._last_run(source, name)
            statuses.append(
                ObjectStatus(
                    source=source,
                    object=name,
                    phase=checkpoint.phase if checkpoint else None,
                    cursor=checkpoint.cursor if checkpoint else None,
                    rows=live,
                    deleted=total - live,
                    rejects=self._reject_count(source, name),
                    last_run_status=last.get("status"),
                    last_run_at=last.get("finished_at") or last.get("started_at"),
                    last_error=last.get("error"),
                )
            )
        return statuses

    def _last_run(self, source: str, name: str) -> dict[str, Any]:
        query = (
            select(mirror_runs)
            .where(mirror_runs.c.source == source, mirror_runs.c.object == name)
            .order_by(mirror_runs.c.id.desc())
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return row._asdict() if row else {}

    def _reject_count(self, source: str, name: str) -> int:
        query = select(func.count()).where(
            mirror_rejects.c.source == source, mirror_rejects.c.object == name
        )
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _source(self, source: str) -> Any:
        try:
            return self.config.sources[source]
        except KeyError:
            known = ", ".join(self.config.sources) or "none"
            raise ConfigError(f"no source named {source!r} (configured: {known})") from None


def _build_adapter(crm: str, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    factories = {ep.name: ep for ep in entry_points(group=ADAPTER_GROUP)}
    if crm not in factories:
        available = ", ".join(sorted(factories)) or "none installed"
        raise ConfigError(f"no adapter for CRM {crm!r} (available: {available})")
    factory = factories[crm].load()
    adapter: CrmAdapter = factory(source, dict(settings))
    return adapter
