"""``Mirror``: the one object an embedding app, the CLI and the daemon open.

It wires the engine's parts together and adds no logic of its own: the pull (``mirror.pull``),
the push (``mirror.push``), partner slices (``mirror.visibility``, ``mirror.portal``) and the
status reads (``mirror.status``), over the store, adapters and rules of its config
(``mirror.configured``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from mirror.configured import build_adapter, process_holder
from mirror.errors import AccessDenied
from mirror.leases import Leases
from mirror.portal.users import PartnerUser, find_partner_user
from mirror.portal.view import Explanation, PartnerView, vendor_explanation
from mirror.pull.ranges import plan_of
from mirror.pull.runs import ClosedRun, close_orphaned_runs
from mirror.pull.sync import ProgressCallback, Puller, RunResult
from mirror.push.conflicts import list_conflicts, resolve_conflict
from mirror.push.diff import field_changes
from mirror.push.outbox import latest_entries, open_entries
from mirror.push.wakeup import PushWaker
from mirror.push.writeback import Pusher, PushResult
from mirror.status import ObjectStatus, object_statuses, queue_summary
from mirror.store.database import utcnow
from mirror.store.reads import live_rows, stored_record
from mirror.stream import inbox
from mirror.stream.ops import Streams, push_job, sync_job
from mirror.types import ObjectSpec
from mirror.visibility import postgres_rls as rls
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.grants import granted, is_inherited, stored_grants
from mirror.visibility.postgres_rls import SecurityReport
from mirror.visibility.rules import VisibilityRules

__all__ = ["Mirror", "ObjectStatus", "build_adapter"]


class Mirror(Streams):
    """A configured mirror: its store, its CRM sources and the operations on them."""

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
        leases = leases or Leases(self.store, process_holder(), self.config.daemon.lease_seconds)
        self.close_orphaned_runs()
        results = []
        for source in sources or self.config.sources:
            names = list(objects or self.object_names(source))
            specs = {name: self.spec(source, name, refresh=True) for name in names}
            access = self.grant_upkeep(source).page_hook(deferred=True)
            puller = self._puller(source, specs, leases, access)
            # slices a killed sync left underived are settled before this one starts
            access.settle_pending()
            try:
                for name in names:
                    if stop is not None and stop.is_set():
                        break
                    began = utcnow()
                    with self.work_lock(sync_job(source, name)):
                        result = puller.sync_object(
                            specs[name], restart=restart, progress=progress, stop=stop
                        )
                    if not result.stopped:
                        inbox.polled(self.store, source, name, began)
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
        access = self.grant_upkeep(source).page_hook(deferred=True)
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

    def push_on_write(self) -> Callable[[], None]:
        """Push each source soon after a portal write to it, on threads of this process, as
        the daemon's wake-up does (``[daemon] push_wake_window``, ``push_wake_poll``): what an
        application that embeds the mirror and pushes on a schedule of its own runs beside it.
        Returns the function that stops it (and waits for its threads)."""
        stop = threading.Event()
        daemon = self.config.daemon

        def push_one(source: str) -> None:
            self.push([source])

        waker = PushWaker(
            self.store,
            push_one,
            self.config.sources,
            stop,
            window=daemon.push_wake_window,
            poll=daemon.push_wake_poll,
        ).start()

        def close() -> None:
            stop.set()
            waker.close()

        return close

    def push(self, sources: Iterable[str] | None = None) -> dict[str, PushResult]:
        """Send pending portal edits to their CRMs; returns what each source's push did."""
        results = {}
        for source in sources or self.config.sources:
            access = self.grant_upkeep(source)
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
            with self.work_lock(push_job(source)):
                results[source] = pusher.push()
        return results

    def poll_gaps(
        self, sources: Iterable[str] | None = None, *, stop: threading.Event | None = None
    ) -> list[RunResult]:
        """The incremental polls the streams' gaps asked for (``mirror.stream``), now."""
        results = []
        for source in sources or self.config.sources:
            wanted = {o for _s, o, _r in inbox.requested_polls(self.store, source)}
            names = [name for name in self.object_names(source) if name in wanted]
            if names:
                results += self.sync(names, sources=[source], stop=stop)
        return results

    def _stored_spec(self, source: str) -> Callable[[str], ObjectSpec]:
        return lambda name: self.store.mirrored(source, name).spec

    def outbox(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox entries, newest first (``status``: pending, sending, blocked, done, failed,
        superseded)."""
        with self.store.engine.connect() as conn:
            return [asdict(entry) for entry in latest_entries(conn, status, limit)]

    def diff(self, object_name: str, record_id: str, source: str | None = None) -> dict[str, Any]:
        """Mirror versus CRM for one record, changing nothing: the fields that differ, and
        the portal edits still on their way."""
        source = source or self.default_source
        mirrored = self.store.mirrored(source, object_name)
        spec = mirrored.spec
        in_mirror = stored_record(self.store, mirrored, record_id)
        with self.store.engine.connect() as conn:
            pending = open_entries(conn, source, object_name, [record_id]).get(record_id, [])
        fetched = self.adapter(source).fetch(spec, [record_id])
        in_crm = fetched[0] if fetched else None
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
        access = self.grant_upkeep(rules.source)
        registrations = self.registrations(rules.source)
        if user is None:
            return PartnerView(
                self.store,
                rules,
                partner_id,
                role=role or "admin",
                upkeep=access,
                registrations=registrations,
            )
        crm_role = self._user_role(rules, partner_id, user)
        return PartnerView(
            self.store,
            rules,
            partner_id,
            user_id=user,
            role=role or crm_role,
            upkeep=access,
            registrations=registrations,
        )

    def partner_user(self, login: str, *, source: str | None = None) -> PartnerUser | None:
        """The mirrored partner user whose user id or e-mail (the ``login_fields`` of
        ``[partner_users]``) is ``login``: its partner, user id and CRM role; ``None`` when no
        single live partner user answers to it. One query, whatever the number of partners."""
        return find_partner_user(self.store, self.visibility(source), login)

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

    def _user_role(self, rules: VisibilityRules, partner_id: str, user: str) -> str:
        """The role the CRM gives ``user``, once it is known to be a user of ``partner_id``."""
        if not (rules.user_object and rules.user_partner_field):
            return "rep"
        try:
            users = self.store.mirrored(rules.source, rules.user_object)
        except KeyError:
            raise AccessDenied(f"user {user} is not known (users are not mirrored)") from None
        columns = [rules.user_partner_field]
        if rules.user_role_field:
            columns.append(rules.user_role_field)
        found = live_rows(self.store, users, columns, where={users.spec.key: user})
        row = found[0] if found else None
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
            return self.grant_upkeep(rules.source).rebuild(conn)

    def access_rows(self, source: str | None = None) -> set[tuple[str, ...]]:
        """Every grant of ``source``, stored or read through a parent (for audits and tests
        comparing with a rebuild)."""
        rules = self.visibility(source)
        with self.store.engine.connect() as conn:
            rows = {tuple(row) for row in conn.execute(stored_grants(rules.source))}
            for name in rules.slices:
                if is_inherited(rules, name):
                    inherited = granted(self.store, rules, name)
                    rows |= {(name, *row) for row in conn.execute(inherited)}
        return rows

    def partners(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every partner with the size of its slice per object."""
        rules = self.visibility(source)
        mirrored = self.store.mirrored(rules.source, rules.partner_object)
        key = mirrored.spec.key
        name_field = self._schema_settings(rules.source, "partners").get("name_field", "Name")
        name = name_field if name_field in mirrored.table.c else key
        flag = {rules.partner_flag: True} if rules.partner_flag else None
        partners = live_rows(self.store, mirrored, [key, name], where=flag, order_by=name)
        with self.store.engine.connect() as conn:
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
            access = self.grant_upkeep(source).page_hook()
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
        configured = None
        if unsynced:
            configured = {source: self.object_names(source) for source in self.config.sources}
        return object_statuses(self.store, configured)

    def queue_summary(self) -> dict[str, int]:
        """Outbox entries per status, plus ``conflicts``: the open conflicts."""
        with self.store.engine.connect() as conn:
            return queue_summary(conn)
