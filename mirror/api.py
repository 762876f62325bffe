"""``Mirror``: the one object an embedding app, the CLI and the daemon open.

Adapters are found through the ``prm_mirror.adapters`` entry-point group, or registered by hand
(``mirror.registry``), so the engine never imports a CRM client; an app may also pass
ready-made adapters to ``Mirror.open``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mirror import redaction
from mirror.adapter import CrmAdapter
from mirror.config import MirrorConfig, load_config, secret_values
from mirror.errors import AccessDenied, ConfigError
from mirror.leases import Leases
from mirror.portal.registrations import Registrations, RegistrationSettings
from mirror.portal.view import Explanation, PartnerView, vendor_explanation
from mirror.pull.pages import PageHook
from mirror.pull.ranges import plan_of
from mirror.pull.runs import ClosedRun, close_orphaned_runs
from mirror.pull.sync import ProgressCallback, Puller, RunResult
from mirror.push.conflicts import list_conflicts, resolve_conflict
from mirror.push.diff import Policy, field_changes
from mirror.push.outbox import open_entries
from mirror.push.writeback import Pusher, PushResult
from mirror.registry import adapter_plugin
from mirror.schema import apply_schema, load_crm_schema
from mirror.store.database import Store
from mirror.store.tables import (
    mirror_access,
    mirror_access_pending,
    mirror_conflicts,
    mirror_outbox,
    mirror_rejects,
    mirror_runs,
)
from mirror.types import ObjectSpec
from mirror.visibility import column_grants
from mirror.visibility import postgres_rls as rls
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.access import AccessMaintainer
from mirror.visibility.grants import granted, is_inherited
from mirror.visibility.postgres_rls import SecurityReport
from mirror.visibility.rule_check import served_rules, validate_rules
from mirror.visibility.rules import VisibilityRules, merge_settings, parse_rules

log = logging.getLogger("prm_mirror")


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
    # backfilled, but its partner slices wait for the end of the sync (or, after a crash,
    # for the next sync)
    slices_pending: bool = False
    # when a sync of the object last ended well
    last_success_at: datetime | None = None


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
        redaction.register([*secret_values(config), *redaction.environment_secrets()])
        self.store = Store(config.store.database, run_lease_seconds=config.daemon.lease_seconds)
        self._adapters: dict[str, CrmAdapter] = dict(adapters or {})
        self._specs: dict[tuple[str, str], ObjectSpec] = {}
        self._rules: dict[str, VisibilityRules] = {}
        self._served: dict[str, VisibilityRules] = {}
        self.hooks: list[PageHook] = list(hooks)
        column_grants.follow_added_columns(self.store, self._rules_of)

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

    def check(self) -> dict[str, str | None]:
        """Reach every source; maps source name to ``None`` (fine) or the error message."""
        results: dict[str, str | None] = {}
        for source in self.config.sources:
            try:
                self.adapter(source).check()
                self.visibility(source)
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
        stop: threading.Event | None = None,
        leases: Leases | None = None,
    ) -> list[RunResult]:
        """Bring objects up to date (backfilling those never synced); one run per object.
        When ``stop`` is set, the object being synced ends after its current page and no
        further object starts. The ranges of split backfills (``[sync] backfill_ranges``) are
        read under ``leases`` (default: this process's own), so daemon workers reading the
        same backfill keep theirs."""
        leases = leases or Leases(self.store, _process_holder(), self.config.daemon.lease_seconds)
        self.close_orphaned_runs()
        results = []
        for source in sources or self.config.sources:
            names = list(objects or self.object_names(source))
            specs = {name: self.spec(source, name, refresh=True) for name in names}
            access = AccessMaintainer(self.store, self.slice_rules(source), defer_settle=True)
            puller = self._puller(source, specs, leases, access)
            # slices a killed sync left underived are settled before this one starts
            access.settle_pending()
            try:
                for name in names:
                    if stop is not None and stop.is_set():
                        break
                    result = puller.sync_object(
                        specs[name], restart=restart, progress=progress, stop=stop
                    )
                    if result.kind == "backfill" and self.config.sync.sweep_after_backfill:
                        mirrored = self.store.mirrored(source, name)
                        result.swept += puller.sweep(mirrored, result.run_id)
                    results.append(result)
            finally:
                access.settle_pending()
        return results

    def join_backfills(
        self,
        source: str,
        leases: Leases,
        *,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> list[RunResult]:
        """Read free ranges of the source's split backfills (planned by any worker, or left
        by a dead one); objects without a split backfill in progress are not touched."""
        names = [n for n in self.object_names(source) if self._split_backfill(source, n)]
        if not names:
            return []
        specs = {name: self.spec(source, name) for name in names}
        access = AccessMaintainer(self.store, self.slice_rules(source), defer_settle=True)
        puller = self._puller(source, specs, leases, access)
        results = []
        try:
            for name in names:
                if stop is not None and stop.is_set():
                    break
                result = puller.join_backfill(specs[name], progress=progress, stop=stop)
                if result is not None:
                    results.append(result)
        finally:
            access.settle_pending()
        return results

    def _split_backfill(self, source: str, name: str) -> bool:
        return plan_of(self.store.load_checkpoint(source, name)) is not None

    def _puller(
        self,
        source: str,
        specs: Mapping[str, ObjectSpec],
        leases: Leases | None,
        access: AccessMaintainer,
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
            indexes=_path_indexes(rules),
            policy_of=self.policy_of(source),
            backfill_ranges=self.config.sync.backfill_ranges,
            range_min_records=self.config.sync.backfill_range_min_records,
            leases=leases,
            access=access,
        )

    def policy_of(self, source: str) -> Callable[[str, str], Policy]:
        """The conflict policy of each object field of ``source`` (``manual`` by default)."""
        policies = self._source(source).conflicts
        default = Policy(policies.get("default", "manual"))

        def policy(object_name: str, field_name: str) -> Policy:
            chosen = policies.get(f"{object_name}.{field_name}") or policies.get(object_name)
            return Policy(chosen) if chosen else default

        return policy

    def push(self, sources: Iterable[str] | None = None) -> dict[str, PushResult]:
        """Send pending portal edits to their CRMs; returns what each source's push did."""
        results = {}
        for source in sources or self.config.sources:
            access = AccessMaintainer(self.store, self.slice_rules(source))
            pusher = Pusher(
                self.store,
                self.adapter(source),
                source,
                self._stored_spec(source),
                batch_size=self.config.sync.push_batch_size,
                max_attempts=self.config.sync.push_max_attempts,
                base_delay=self.config.sync.push_retry_delay,
                on_change=access.refresh,
                access=access,
            )
            results[source] = pusher.push()
        return results

    def _stored_spec(self, source: str) -> Callable[[str], ObjectSpec]:
        return lambda name: self.store.mirrored(source, name).spec

    def outbox(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox entries, newest first (``status``: pending, sending, blocked, done, failed,
        superseded)."""
        o = mirror_outbox.c
        query = select(mirror_outbox).order_by(o.seq.desc()).limit(limit)
        if status:
            query = query.where(o.status == status)
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def diff(self, object_name: str, record_id: str, source: str | None = None) -> dict[str, Any]:
        """Mirror versus CRM for one record, changing nothing: the fields that differ, and
        the portal edits still on their way."""
        source = source or self.default_source
        mirrored = self.store.mirrored(source, object_name)
        spec = mirrored.spec
        key = mirrored.table.c[spec.key]
        with self.store.engine.connect() as conn:
            row = conn.execute(select(mirrored.table).where(key == record_id)).first()
            pending = open_entries(conn, source, object_name, [record_id]).get(record_id, [])
        fetched = self.adapter(source).fetch(spec, [record_id])
        in_crm = fetched[0] if fetched else None
        in_mirror = dict(row._mapping) if row else None
        fields = field_changes(in_mirror or {}, in_crm or {}, spec.field_names)
        return {
            "in_mirror": in_mirror is not None,
            "in_crm": in_crm is not None and not in_crm.get("IsDeleted"),
            "fields": fields,
            "pending": [
                {"seq": e.seq, "op": e.op, "status": e.status, "values": e.new_values}
                for e in pending
            ],
        }

    def conflicts(self, status: str | None = "open") -> list[dict[str, Any]]:
        """Conflicts between portal edits and CRM changes (open ones by default)."""
        return list_conflicts(self.store, status)

    def resolve_conflict(
        self, conflict_id: int, take: str, value: Any = None, by: str | None = None
    ) -> dict[str, Any]:
        """Resolve a parked conflict: take ``crm``, ``portal`` or ``value``."""
        return resolve_conflict(self.store, conflict_id, take, value, by)

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

    @property
    def default_source(self) -> str:
        """The only source, when there is one (else name it explicitly)."""
        if len(self.config.sources) != 1:
            raise ConfigError("several sources are configured: name the one you mean")
        return next(iter(self.config.sources))

    def as_partner(
        self,
        partner_id: str,
        user: str | None = None,
        *,
        role: str | None = None,
        source: str | None = None,
    ) -> PartnerView:
        """A view of one partner's slice: as the partner itself (its whole slice), or as one
        of its users, whose role (``admin`` or ``rep``) comes from ``role`` or the CRM. A
        user is always checked to be one of the partner's (``AccessDenied`` if not), whether
        or not ``role`` is given."""
        rules = self.visibility(source)
        access = AccessMaintainer(self.store, rules)
        registrations = self.registrations(rules.source)
        if user is None:
            return PartnerView(
                self.store,
                rules,
                partner_id,
                role=role or "admin",
                access=access,
                registrations=registrations,
            )
        crm_role = self._user_role(rules, partner_id, user)
        return PartnerView(
            self.store,
            rules,
            partner_id,
            user_id=user,
            role=role or crm_role,
            access=access,
            registrations=registrations,
        )

    def explain(
        self,
        partner_id: str,
        object_name: str,
        record_id: str,
        user: str | None = None,
        *,
        source: str | None = None,
    ) -> Explanation:
        """Why a record is or is not in a partner's (or partner user's) slice, for the
        vendor: outside the slice it says whether the record is not mirrored, was deleted or
        has no path, which ``PartnerView.explain`` keeps from the partner."""
        return vendor_explanation(
            self.as_partner(partner_id, user, source=source), object_name, record_id
        )

    def registrations(self, source: str | None = None) -> Registrations | None:
        """Deal registration for ``source`` (``None`` when its schema configures none)."""
        source = source or self.default_source
        settings = self._source(source)
        raw = load_crm_schema(settings.crm, self.config.schemas_dir).raw.get("registrations")
        if not raw:
            return None
        merged = merge_settings(raw, settings.registrations)
        access = AccessMaintainer(self.store, self.slice_rules(source))
        return Registrations(self.store, source, RegistrationSettings.from_raw(merged), access)

    def _user_role(self, rules: VisibilityRules, partner_id: str, user: str) -> str:
        """The role the CRM gives ``user``, once it is known to be a user of ``partner_id``."""
        if not (rules.user_object and rules.user_partner_field):
            return "rep"
        try:
            users = self.store.mirrored(rules.source, rules.user_object)
        except KeyError:
            raise AccessDenied(f"user {user} is not known (users are not mirrored)") from None
        table = users.table
        columns = [table.c[rules.user_partner_field]]
        if rules.user_role_field:
            columns.append(table.c[rules.user_role_field])
        query = select(*columns).where(table.c[users.spec.key] == user, table.c._deleted.is_(False))
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row[0] != partner_id:
            raise AccessDenied(f"user {user} is not a user of partner {partner_id}")
        if rules.user_role_field and row[1] in rules.admin_roles:
            return "admin"
        return "rep"

    def install_partner_security(self, role: str, source: str | None = None) -> SecurityReport:
        """PostgreSQL row-level security and column grants for a portal's database role, so
        plain SQL as that role sees only the partner set with ``SET prm.partner_id``."""
        return rls.install_partner_security(self.store, self.visibility(source), role)

    def rebuild_access(self, source: str | None = None) -> int:
        """Recompute the partner access table from scratch; returns how many grants it holds."""
        rules = self.visibility(source)
        with self.store.transaction() as conn:
            return AccessMaintainer(self.store, rules).rebuild(conn)

    def access_rows(self, source: str | None = None) -> set[tuple[str, ...]]:
        """Every grant of ``source``, stored or read through a parent (for audits and tests
        comparing with a rebuild)."""
        rules = self.visibility(source)
        a = mirror_access.c
        query = select(
            a.object, a.record_id, a.partner_id, a.owner_id, a.path, a.via_object, a.via_id
        ).where(a.source == rules.source)
        with self.store.engine.connect() as conn:
            rows = {tuple(row) for row in conn.execute(query)}
            for name in rules.slices:
                if is_inherited(rules, name):
                    inherited = granted(self.store, rules, name)
                    rows |= {(name, *row) for row in conn.execute(inherited)}
        return rows

    def partners(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every partner with the size of its slice per object."""
        rules = self.visibility(source)
        mirrored = self.store.mirrored(rules.source, rules.partner_object)
        table = mirrored.table
        key = table.c[mirrored.spec.key]
        name_field = (
            load_crm_schema(self._source(rules.source).crm, self.config.schemas_dir)
            .raw.get("partners", {})
            .get("name_field", "Name")
        )
        name_column = table.c.get(name_field, key)
        query = select(key, name_column).where(table.c._deleted.is_(False))
        if rules.partner_flag:
            query = query.where(table.c[rules.partner_flag].is_(True))
        with self.store.engine.connect() as conn:
            partners = conn.execute(query.order_by(name_column)).all()
            counts = slice_sizes.sizes(conn, rules.source)
        return [{"id": p, "name": n, "slice": counts.get(p, {})} for p, n in partners]

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
            access = AccessMaintainer(self.store, self.slice_rules(source))
            puller = Puller(self.store, self.adapter(source), hooks=[*self.hooks, access])
            for name in objects or self.object_names(source):
                mirrored = self.store.prepare_object(self.spec(source, name, refresh=True))
                swept[f"{source}.{name}"] = puller.sweep(mirrored)
        return swept

    def close_orphaned_runs(self) -> list[ClosedRun]:
        """Mark ``interrupted`` the runs left ``running`` by processes that died (killed, or
        their machine lost), each with the reason; a live worker's runs are left alone."""
        return close_orphaned_runs(self.store)

    def status(self, *, unsynced: bool = False) -> list[ObjectStatus]:
        """Per mirrored object: phase, cursor, row counts, rejects and the last run (runs
        whose process died are closed as ``interrupted`` first); with ``unsynced``, then each
        configured object never synced, with phase ``None``."""
        self.close_orphaned_runs()
        statuses = []
        p = mirror_access_pending.c
        with self.store.engine.connect() as conn:
            pending = {tuple(row) for row in conn.execute(select(p.source, p.object))}
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
                    slices_pending=(source, name) in pending,
                    last_success_at=self._last_success(source, name),
                )
            )
        if not unsynced:
            return statuses
        return statuses + self._never_synced({(s.source, s.object) for s in statuses})

    def _never_synced(self, mirrored: set[tuple[str, str]]) -> list[ObjectStatus]:
        """The configured objects with no table yet: their status says so (phase ``None``)."""
        missing = []
        for source in self.config.sources:
            for name in self.object_names(source):
                if (source, name) in mirrored:
                    continue
                last = self._last_run(source, name)
                missing.append(
                    ObjectStatus(
                        source=source,
                        object=name,
                        phase=None,
                        cursor=None,
                        rows=0,
                        deleted=0,
                        rejects=0,
                        last_run_status=last.get("status"),
                        last_run_at=last.get("finished_at") or last.get("started_at"),
                        last_error=last.get("error"),
                    )
                )
        return missing

    def queue_summary(self) -> dict[str, int]:
        """Outbox entries per status, plus ``conflicts``: the open conflicts."""
        o, c = mirror_outbox.c, mirror_conflicts.c
        with self.store.engine.connect() as conn:
            counts = dict(conn.execute(select(o.status, func.count()).group_by(o.status)).all())
            counts["conflicts"] = conn.execute(
                select(func.count()).where(c.status == "open")
            ).scalar_one()
        return {str(k): int(v) for k, v in counts.items()}

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

    def _last_success(self, source: str, name: str) -> datetime | None:
        r = mirror_runs.c
        query = select(func.max(r.finished_at)).where(
            r.source == source, r.object == name, r.status == "ok"
        )
        with self.store.engine.connect() as conn:
            finished: datetime | None = conn.execute(query).scalar()
        return finished

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


def build_adapter(crm: str, source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    """The adapter of ``crm`` (an installed adapter entry point, or one registered with
    ``register_adapter``) for ``source``."""
    return adapter_plugin(crm).build(source, dict(settings))


def _path_indexes(rules: VisibilityRules) -> dict[str, tuple[str, ...]]:
    """The reference fields slice paths follow, per object, so upkeep and queries use indexes."""
    wanted: dict[str, set[str]] = {}
    for rule in rules.slices.values():
        if rule.owner_field:
            wanted.setdefault(rule.object, set()).add(rule.owner_field)
        for path in rule.paths:
            if path.kind in ("direct", "parent") and path.field:
                wanted.setdefault(rule.object, set()).add(path.field)
            elif path.kind == "child" and path.other and path.field:
                wanted.setdefault(path.other, set()).add(path.field)
    return {name: tuple(sorted(fields)) for name, fields in wanted.items()}


def _process_holder() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
