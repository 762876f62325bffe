"""The state machine the stateful tests run against each CRM's sandbox (``stateful_run``
says how to run it longer).

Rules interleave, in any order hypothesis chooses: CRM changes at chosen instants (the same
second as the step before included, the field the portal edited last, many records on one
timestamp), deletes, restores, hard deletes and merges; portal updates and creates through
``Mirror.as_partner``; pushes under lost answers, 503s, expired sessions and a CRM edit landing
between the version check and the write; syncs disturbed after a page of each object (a CRM
change to a record the sync delivered already or has still to deliver, a clock step) and then
interrupted (503s within and past the retry budget, a lost answer, an expired session, a stop,
a crash after the page's commit or inside its transaction); new backfills and delete sweeps.
At the end the faults are switched off and the mirror is brought to rest (sync, push, again
until nothing moves, a bounded number of times); then ``stateful_checks`` holds it to its
invariant. A run that already failed is not brought to rest: its own failure is reported.

``features`` switch families of steps on (``ALL_FEATURES``): a test leaves out the families
with a known failure not fixed yet, and runs each in a test of its own, marked as such.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from sqlalchemy import func, select

from mirror import AccessDenied, Mirror, TransientError
from mirror.config import parse_config
from mirror.errors import ValidationError
from mirror.push.outbox import is_local
from mirror.store.tables import mirror_outbox
from tests.conftest import fresh_database
from tests.mirror.crm_driver import CrmDriver, frozen_sandbox_time
from tests.mirror.stateful_checks import Edit, Model, edits_accounted, idmap, mirror_equals_crm

# mid-sync: CRM changes and clock steps at a page boundary of a running sync
# same_second: CRM changes in the second of the step before (else a second later at least)
# lost_creates: a portal create's answer lost past the retry budget (the CRM made the record)
# lost_updates: a portal update's answer lost past the retry budget (the CRM has the value)
# deletes: deals deleted in the CRM (and restored where the CRM has a recycle bin)
# hard_deletes: records hard-deleted in the CRM (found only by the delete sweep)
# restarts: a sync that starts the backfill again from scratch
# concurrent_edits: a CRM edit landing between the pusher's version check and its write
# local_ids: a partner keeps using the local id create() returned after the push
ALL_FEATURES = frozenset(
    {"mid_sync", "same_second", "lost_creates", "lost_updates", "deletes", "hard_deletes",
     "restarts", "concurrent_edits", "local_ids"}
)  # fmt: skip
HOT = 3  # records both sides edit, so that their edits meet
QUIET_ROUNDS = 6
POLICIES = ("manual", "crm_wins", "portal_wins", "latest_wins")
MID_SYNC = ("delivered", "ahead", "advance")
INTERRUPTIONS = (
    "none", "fail_within", "fail_past", "drop", "expire", "stop", "crash", "crash_in_page",
)  # fmt: skip
PUSH_FAULTS = ("none", "drop", "drop_all", "fail_within", "fail_past", "expire", "edit")


class Crash(Exception):
    """The process going down at a chosen point."""


class MirrorMachine(RuleBasedStateMachine):
    """Random interleavings of CRM changes, portal writes, syncs, pushes and faults."""

    driver_class: ClassVar[type[CrmDriver]]
    backend: ClassVar[str] = "sqlite"
    features: ClassVar[frozenset[str]] = ALL_FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.stack.enter_context(frozen_sandbox_time())
        folder = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="prm-st-")))
        self.url = self.stack.enter_context(fresh_database(self.backend))
        self.driver = self.driver_class(folder)
        self.stack.callback(self.driver.close)
        self.model = Model()
        self.hot = self.driver.partnered_deals()[:HOT]
        self.customers = self.driver.customer_accounts()[:4]
        self.created: list[tuple[str, str]] = []  # (local id, partner)
        self.crash_in_page = 0
        self.mirror: Mirror | None = None

    # -- set-up ----------------------------------------------------------------------------------

    @initialize(
        policy=st.sampled_from(POLICIES),
        at=st.integers(1, 4),
        changes=st.lists(st.tuples(st.sampled_from(MID_SYNC), st.integers(0, 10_000)), max_size=2),
        interruption=st.tuples(st.sampled_from(INTERRUPTIONS), st.integers(0, 1)),
    )
    def backfill(
        self, policy: str, at: int, changes: list[tuple[str, int]], interruption: tuple[str, int]
    ) -> None:
        """An empty mirror of the sandbox, with one conflict policy for every field, and its
        first backfill, disturbed and interrupted as ``sync`` describes."""
        self.open_mirror(policy)
        self.sync(at, changes, interruption, advance=1, after="nothing")

    def open_mirror(self, policy: str) -> None:
        """An empty mirror of the sandbox with one conflict policy for every field."""
        driver = self.driver
        settings = {
            **driver.source_settings(),
            "crm": driver.crm,
            "objects": list(driver.objects),
            "conflicts": {"default": policy},
        }
        config = parse_config(
            {
                "store": {"database": self.url},
                "sync": {"push_retry_delay": 0, "prefetch_pages": 0},
                "sources": {driver.source: settings},
            }
        )
        self.mirror = Mirror(
            config, adapters={driver.source: driver.adapter()}, hooks=[self._page_hook]
        )
        self.stack.callback(self.mirror.close)

    def teardown(self) -> None:
        """Bring the mirror to rest and hold it to the invariant; then clean up."""
        try:
            if self.mirror is not None and sys.exc_info()[0] is None:
                self._quiesce()
                found = mirror_equals_crm(self.mirror, self.driver, self.model)
                found += edits_accounted(self.mirror, self.driver, self.model)
                assert not found, "\n".join(found)
        finally:
            self.stack.close()

    # -- helpers -------------------------------------------------------------------------------

    @property
    def m(self) -> Mirror:
        assert self.mirror is not None
        return self.mirror

    def _advance(self, seconds: int) -> None:
        if "same_second" not in self.features:
            seconds = max(seconds, 1)
        self.driver.advance(seconds)

    def _page_hook(self, _conn: Any, _mirrored: Any, _outcome: Any) -> None:
        if self.crash_in_page:
            self.crash_in_page -= 1
            if not self.crash_in_page:
                raise Crash("inside a page's transaction")

    def _pick(self, ids: list[Any], index: int) -> Any:
        return ids[index % len(ids)] if ids else None

    def _live(self, name: str, record_id: str) -> bool:
        model, record = self.model, (name, record_id)
        return record not in model.deleted | model.hard_deleted and record not in model.merged

    def _outbox_seq(self) -> int:
        with self.m.store.engine.connect() as conn:
            latest = select(func.coalesce(func.max(mirror_outbox.c.seq), 0))
            return int(conn.execute(latest).scalar_one())

    def _last_edit(self) -> tuple[str, str] | None:
        """The CRM id and field of the last portal update of a deal the CRM still has."""
        mapped = idmap(self.m) if self.mirror is not None else {}
        for edit in reversed(self.model.edits):
            record_id = mapped.get(edit.record_id, edit.record_id)
            if edit.op != "update" or is_local(record_id):
                continue
            if self.driver.values(edit.object, record_id) is not None:
                return record_id, next(iter(edit.values))
        return None

    def _ready(self) -> bool:
        store = self.m.store
        return all(
            store.load_checkpoint(self.driver.source, name) is not None
            for name in (self.driver.account, self.driver.deal.object)
        )

    # -- the CRM ---------------------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["deal", "contested", "many", "account", "side"]),
        index=st.integers(0, 10_000),
        count=st.integers(1, 260),
        advance=st.sampled_from([0, 1, 2]),
    )
    def crm_change(self, kind: str, index: int, count: int, advance: int) -> None:
        """Someone changes records in the CRM: a deal the portal may be editing too, the field
        the portal edited last, many deals on one timestamp (an import, a workflow), an end
        customer, or a record no portal edits (a user)."""
        self._advance(advance)
        driver, deal = self.driver, self.driver.deal
        if kind == "contested":
            last = self._last_edit()
            if last is not None:
                driver.update(deal.object, last[0], {last[1]: driver.token("c")})
        elif kind == "deal":
            pair = self._pick(self.hot, index)
            if pair is not None and self._live(deal.object, pair[0]):
                name = deal.fields[count % len(deal.fields)]
                driver.update(deal.object, pair[0], {name: driver.token("c")})
        elif kind == "many":
            ids = [i for i in driver.live_ids(deal.object) if self._live(deal.object, i)]
            first = index % max(len(ids), 1)
            chosen = (ids[first:] + ids[:first])[: min(count, len(ids))]
            if chosen:
                driver.update_many(deal.object, chosen, deal.fields[count % len(deal.fields)])
        elif kind == "account":
            account = self._pick(self.customers, index)
            if account is not None and self._live(driver.account, account):
                driver.update(driver.account, account, {driver.account_field: driver.token("a")})
        elif driver.side_fields:
            name = sorted(driver.side_fields)[index % len(driver.side_fields)]
            record = self._pick(driver.live_ids(name)[:HOT], count)
            driver.update(name, record, {driver.side_fields[name]: driver.token("u")})

    @rule(
        kind=st.sampled_from(["delete", "undelete", "hard_delete", "merge"]),
        index=st.integers(0, HOT - 1),
        other=st.integers(0, 3),
    )
    def crm_lifecycle(self, kind: str, index: int, other: int) -> None:
        """A deal is deleted, restored or deleted for good; two end customers are merged."""
        self.driver.advance(1)
        pair, name = self._pick(self.hot, index), self.driver.deal.object
        record = (name, pair[0]) if pair is not None else None
        if record is None:
            return
        if kind in ("delete", "undelete") and "deletes" not in self.features:
            return
        if kind == "delete" and self._live(*record):
            self.driver.delete(*record)
            self.model.deleted.add(record)
        elif kind == "undelete" and self.driver.can_undelete and record in self.model.deleted:
            self.driver.undelete(*record)
            self.model.deleted.discard(record)
        elif kind == "hard_delete" and "hard_deletes" in self.features:
            # a CRM without a recycle bin keeps nothing of a deleted record to delete again
            if self._live(*record) or (record in self.model.deleted and self.driver.can_undelete):
                self.driver.hard_delete(*record)
                self.model.deleted.discard(record)
                self.model.hard_deleted.add(record)
        elif kind == "merge" and self.driver.can_merge:
            self._merge(index, other)

    def _merge(self, survivor: int, loser: int) -> None:
        name = self.driver.account
        keep, lose = self._pick(self.customers, survivor), self._pick(self.customers, loser)
        if keep != lose and self._live(name, keep) and self._live(name, lose):
            self.driver.merge(name, keep, lose)
            self.model.merged[(name, lose)] = keep

    # -- the portal ------------------------------------------------------------------------------

    def _accepted(self, op: str, name: str, record_id: str, values: dict, partner: str) -> None:
        self.model.edits.append(Edit(self._outbox_seq(), op, name, record_id, values, partner))

    def _portal_update(self, partner: str, record_id: str, field: int) -> None:
        deal = self.driver.deal
        name = deal.fields[field % len(deal.fields)]
        values = {name: self.driver.token("p")}
        before = self._outbox_seq()
        try:
            self.m.as_partner(partner).update(deal.object, record_id, values)
        except (AccessDenied, ValidationError):
            assert self._outbox_seq() == before, "a refused portal write queued an edit"
            if "local_ids" in self.features and is_local(record_id):
                made = idmap(self.m).get(record_id)
                assert made is None or self.driver.values(deal.object, made) is None, (
                    f"{partner} may no longer update {record_id}, the deal it created"
                    f" (now {made} in the CRM), by the id create() returned"
                )
            return
        self._accepted("update", deal.object, record_id, values, partner)

    @precondition(lambda self: self._ready())
    @rule(
        kind=st.sampled_from(["update", "update_created", "create"]),
        index=st.integers(0, HOT - 1),
        field=st.integers(0, 1),
    )
    def portal_write(self, kind: str, index: int, field: int) -> None:
        """A partner edits one of its deals, edits a deal it created (by the id ``create``
        gave it) or creates a deal."""
        pair = self._pick(self.hot, index)
        if kind == "update_created" and self.created:
            local, partner = self._pick(self.created, index)
            self._portal_update(partner, local, field)
        elif kind == "update" and pair is not None:
            self._portal_update(pair[1], pair[0], field)
        elif kind == "create" and pair is not None:
            partner, deal = pair[1], self.driver.deal
            values = self.driver.new_deal(partner, self.driver.token("n"))
            local = self.m.as_partner(partner).create(deal.object, values)
            self.created.append((local, partner))
            self._accepted("create", deal.object, local, values, partner)

    # -- the engine ------------------------------------------------------------------------------

    @rule(fault=st.sampled_from(PUSH_FAULTS), advance=st.sampled_from([0, 1]))
    def push(self, fault: str, advance: int) -> None:
        """The pusher runs, perhaps through a fault."""
        self._advance(advance)
        if fault == "drop":
            self.driver.drop_next(1, self.driver.write_path)
        elif fault == "drop_all" and self._may_lose_answers():
            self.driver.drop_next(40, self.driver.write_path)
        elif fault == "fail_within":
            self.driver.fail_next(2, self.driver.write_path)
        elif fault == "fail_past":
            self.driver.fail_next(40, self.driver.write_path)
        elif fault == "expire" and self.driver.can_expire:
            self.driver.expire()
        elif fault == "edit" and "concurrent_edits" in self.features:
            self.driver.concurrent_edit = self.driver.checks_apart
        self.m.push()
        self.driver.faults_off()
        self.driver.concurrent_edit = False

    def _may_lose_answers(self) -> bool:
        """Whether every write the push may send is of a kind whose lost answers are on."""
        o = mirror_outbox.c
        query = select(o.op).where(o.status.in_(("pending", "sending"))).distinct()
        with self.m.store.engine.connect() as conn:
            ops = set(conn.execute(query).scalars())
        return all(f"lost_{op}s" in self.features for op in ops)

    @rule(
        at=st.integers(1, 4),
        changes=st.lists(st.tuples(st.sampled_from(MID_SYNC), st.integers(0, 10_000)), max_size=2),
        interruption=st.tuples(st.sampled_from(INTERRUPTIONS), st.integers(0, 1)),
        advance=st.sampled_from([0, 1]),
        after=st.sampled_from(["nothing", "nothing", "sweep", "restart"]),
    )
    def sync(
        self,
        at: int,
        changes: list[tuple[str, int]],
        interruption: tuple[str, int],
        advance: int,
        after: str,
    ) -> None:
        """A sync (or, with ``restart``, a new backfill) runs; after the ``at``-th page of each
        object the CRM changes records of it the sync delivered already or has still to
        deliver, and then, after that page or the next, something interrupts the sync or its
        next request. Afterwards the delete sweep may run."""
        self._advance(advance)
        if "mid_sync" not in self.features:
            changes = []
        if after == "restart" and "restarts" not in self.features:
            after = "nothing"
        pages: dict[str, int] = {}
        delivered: set[tuple[str, str]] = set()
        stop = threading.Event()

        def progress(name: str, _outcome: Any, page: Any) -> None:
            pages[name] = pages.get(name, 0) + 1
            key = self.m.store.mirrored(self.driver.source, name).spec.key
            delivered.update((name, str(r[key])) for r in page.records)
            if pages[name] == at:
                for change, n in changes:
                    self._mid_sync_change(name, change, n, delivered)
            if pages[name] == at + interruption[1]:
                self._interrupt(interruption[0], stop)

        try:
            self.m.sync(progress=progress, stop=stop, restart=after == "restart")
        except (Crash, TransientError):
            pass
        finally:
            self.crash_in_page = 0
            self.driver.faults_off()
        if after == "sweep" and self._ready():
            self.m.sweep()

    def _mid_sync_change(self, name: str, change: str, n: int, delivered: set) -> None:
        """Change a record of ``name`` the running sync delivered already, or one it has not
        delivered yet, in this second or the next."""
        if change == "advance":
            self.driver.advance(1)
            return
        live = [i for i in self.driver.live_ids(name) if self._live(name, i)]
        done = [i for i in live if (name, i) in delivered]
        ahead = [i for i in live if (name, i) not in delivered]
        record = self._pick(done if change == "delivered" else ahead, n)
        if record is not None:
            # the query's first second or the next: the seconds a cursor must get right
            self.driver.advance(n % 2)
            field_name = self.driver.text_field(name, n)
            self.driver.update(name, record, {field_name: self.driver.token("c")})

    def _interrupt(self, interruption: str, stop: threading.Event) -> None:
        if interruption == "crash":
            raise Crash("after a page's commit")
        actions: dict[str, Callable[[], None]] = {
            "none": lambda: None,
            "fail_within": lambda: self.driver.fail_next(2),
            "fail_past": lambda: self.driver.fail_next(40),
            "drop": lambda: self.driver.drop_next(1),
            "expire": self.driver.expire if self.driver.can_expire else lambda: None,
            "stop": stop.set,
            "crash_in_page": lambda: setattr(self, "crash_in_page", 1),
        }
        actions[interruption]()

    # -- quiescence ------------------------------------------------------------------------------

    def _quiesce(self) -> None:
        """Faults off; sync, push and sync again until nothing moves (bounded). The delete
        sweep runs in each round only when records were hard-deleted: nothing else needs it,
        and a sweep would hide a delete the sync missed."""
        self.driver.faults_off()
        self.crash_in_page = 0
        for _ in range(QUIET_ROUNDS):
            self.driver.advance(2)
            moved = _moved(self.m.sync())
            if self.model.hard_deleted:
                self.m.sweep()
            pushed = self.m.push()
            moved = moved or any(r.sent for r in pushed.values())
            if not moved and not self._open_entries():
                return

    def _open_entries(self) -> int:
        o = mirror_outbox.c
        query = select(func.count()).where(
            o.status.in_(("pending", "sending", "blocked"))
            | ((o.status == "done") & o.confirmed.is_(False))
        )
        with self.m.store.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)


def _moved(results: list[Any]) -> bool:
    return any(
        r.totals.inserted or r.totals.updated or r.totals.deleted or r.swept for r in results
    )
