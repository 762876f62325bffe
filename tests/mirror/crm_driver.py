"""A CRM-neutral driver over the three sandboxes, for the stateful tests.

``CrmDriver`` names what a state machine does to a CRM the same way for Salesforce, HubSpot and
Dynamics 365: change records "inside the CRM" (one at a time or many on one timestamp), delete,
restore, hard-delete and merge them, move the clock, inject faults, and read back the truth the
mirror is compared with. Every write the CRM receives through its API (the pusher's) and every
change made through the driver goes to one ordered ``WriteLog``, with the compared fields' values
before it, so a test can tell an edit applied once from one applied twice or over a CRM change
it never saw.

The sandbox clocks follow the wall clock; ``frozen_sandbox_time`` stops that, so only the test
moves time and "the same second" is something a test chooses, not something it hopes for.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sandboxes.kit import clock as sandbox_clock

Values = dict[str, Any]


class FrozenTime:
    """A stand-in for the ``time`` module whose ``time()`` stands still."""

    def __init__(self, start: float) -> None:
        """Stopped at ``start`` (epoch seconds)."""
        self.now = start

    def time(self) -> float:
        """The frozen instant."""
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def frozen_sandbox_time() -> Iterator[FrozenTime]:
    """Stop the wall clock the sandbox clocks follow (they still move by ``advance_clock``)."""
    frozen = FrozenTime(float(int(time.time())))
    modules = (sandbox_clock,)
    saved = [module.time for module in modules]  # type: ignore[attr-defined]
    for module in modules:
        module.time = frozen  # type: ignore[attr-defined]
    try:
        yield frozen
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.time = original  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LoggedWrite:
    """One write the CRM applied: by its API (``origin="api"``) or by the test (``"crm"``)."""

    origin: str
    object: str
    record_id: str
    op: str
    values: Values
    before: Values = field(default_factory=dict)


class WriteLog(list[LoggedWrite]):
    """Every write the CRM applied, in order."""

    def api(self) -> list[LoggedWrite]:
        """The writes that came in through the CRM's API."""
        return [w for w in self if w.origin == "api"]


@dataclass(frozen=True)
class DealShape:
    """The object partners own deals in, and the fields both sides write."""

    object: str
    fields: tuple[str, ...]


class CrmDriver:
    """What the stateful tests do to a CRM; one subclass per sandbox."""

    source: str
    crm: str
    sandbox_class: type
    size: int
    objects: tuple[str, ...]
    deal: DealShape
    account: str
    account_field: str
    # extra CRM-side text fields to change: object -> field (read by a cursor of its own)
    side_fields: dict[str, str] = {}
    compared: dict[str, tuple[str, ...]]
    write_path: str
    can_undelete = True
    can_merge = True
    can_expire = True
    # whether a CRM edit can land between the adapter's version check and its write (the
    # check is a request of its own, not a condition of the write)
    checks_apart = True

    def __init__(self, folder: Path) -> None:
        """A fresh sandbox in ``folder`` (its generated dataset), served until ``close``."""
        self.folder = folder
        self.log = WriteLog()
        self._in_control = False
        self.concurrent_edit = False
        self._tokens = itertools.count(1)
        self.box = self._start()
        self._spy()

    # generated datasets, one per sandbox class and size, copied for each sandbox
    _templates: ClassVar[dict[tuple[type, int], Path]] = {}

    def _start(self) -> Any:
        """A sandbox on a copy of the class's generated dataset (generated once per process)."""
        key = (self.sandbox_class, self.size)
        if key not in self._templates:
            folder = Path(tempfile.mkdtemp(prefix="prm-st-template-"))
            with self.sandbox_class(folder / "crm.db", size=self.size):
                pass
            self._templates[key] = folder / "crm.db"
        shutil.copyfile(self._templates[key], self.folder / "crm.db")
        return self._started(self.sandbox_class(self.folder / "crm.db", size=self.size).start())

    # -- to implement --------------------------------------------------------------------------

    def _started(self, sandbox: Any) -> Any:
        """``sandbox`` once started, made ready for the test."""
        return sandbox

    def _spy(self) -> None:
        """Wrap the sandbox's record writes so API writes reach ``self.log``."""
        raise NotImplementedError

    def adapter(self) -> Any:
        """A product adapter on the sandbox, with small pages and quick retries."""
        raise NotImplementedError

    def source_settings(self) -> Values:
        """The ``[sources.<name>]`` table of the mirror's config (objects and conflicts aside)."""
        raise NotImplementedError

    def live_ids(self, name: str) -> list[str]:
        """The object's live ids in the CRM, sorted."""
        return sorted(self.box.ids(name))

    def values(self, name: str, record_id: str) -> Values | None:
        """The compared fields of a live record as the CRM holds them, or ``None``."""
        record = self.box.get(name, record_id)
        if record is None:
            return None
        return {f: record.get(f) for f in self.compared[name]}

    def partnered_deals(self) -> list[tuple[str, str]]:
        """``(deal id, partner id)`` of the CRM's deals attributed to a partner, sorted."""
        raise NotImplementedError

    def customer_accounts(self) -> list[str]:
        """Live end-customer account ids, sorted."""
        raise NotImplementedError

    def new_deal(self, partner_id: str, name: str) -> Values:
        """The values a partner creates a deal with through the portal."""
        raise NotImplementedError

    def _update(self, name: str, record_id: str, values: Values) -> None:
        self.box.update(name, record_id, values)

    def _same_stamp(self, name: str, ids: Sequence[str]) -> None:
        """Put ``ids`` on one cursor value: the one the last of them was just given."""
        self.box.set_modstamp(name, list(ids), self.box.now())

    def _undelete(self, name: str, record_id: str) -> None:
        self.box.undelete(name, record_id)

    def _merge(self, name: str, survivor: str, loser: str) -> None:
        self.box.merge(name, survivor, [loser])

    def expire(self) -> None:
        """Invalidate the adapter's session (where the CRM has sessions)."""
        self.box.expire_sessions()

    def _clear_faults(self) -> None:
        faults = self.box.org.faults
        with faults.lock:
            faults.failures.clear()
            faults.drops.clear()

    # -- shared --------------------------------------------------------------------------------

    def text_field(self, name: str, n: int) -> str:
        """A text field of ``name`` that the test changes in the CRM (the ``n``-th choice)."""
        if name == self.deal.object:
            return self.deal.fields[n % len(self.deal.fields)]
        if name == self.account:
            return self.account_field
        return self.side_fields[name]

    def token(self, prefix: str) -> str:
        """A value no other write in the run uses."""
        return f"{prefix}{next(self._tokens)}"

    def close(self) -> None:
        """Stop the sandbox."""
        self.box.stop()

    def advance(self, seconds: int) -> None:
        """Move the CRM's clock on."""
        if seconds:
            self.box.advance_clock(seconds)

    @contextmanager
    def _control(self) -> Iterator[None]:
        self._in_control = True
        try:
            yield
        finally:
            self._in_control = False

    def _logged(self, op: str, name: str, record_id: str, values: Values, act: Callable) -> None:
        before = self.values(name, record_id) or {}
        with self._control():
            act()
        self.log.append(LoggedWrite("crm", name, record_id, op, values, before))

    def update(self, name: str, record_id: str, values: Values) -> None:
        """Change a live record inside the CRM."""
        act = lambda: self._update(name, record_id, values)  # noqa: E731
        self._logged("update", name, record_id, values, act)

    def update_many(self, name: str, ids: Sequence[str], field_name: str) -> None:
        """Give each of ``ids`` a new value of ``field_name``, all on one cursor value."""
        for record_id in ids:
            self.update(name, record_id, {field_name: self.token("c")})
        with self._control():
            self._same_stamp(name, ids)

    def touch(self, name: str, ids: Sequence[str]) -> None:
        """Put ``ids`` on one new cursor value, their values unchanged."""
        with self._control():
            self._same_stamp(name, ids)

    def delete(self, name: str, record_id: str) -> None:
        """Delete a live record (a recycle-bin or tracked delete)."""
        self._logged("delete", name, record_id, {}, lambda: self.box.delete(name, record_id))

    def undelete(self, name: str, record_id: str) -> None:
        """Restore a deleted record."""
        act = lambda: self._undelete(name, record_id)  # noqa: E731
        self._logged("undelete", name, record_id, {}, act)

    def hard_delete(self, name: str, record_id: str) -> None:
        """Delete a record so that no change API reports it (only a sweep finds it)."""
        act = lambda: self.box.hard_delete(name, record_id)  # noqa: E731
        self._logged("hard_delete", name, record_id, {}, act)

    def merge(self, name: str, survivor: str, loser: str) -> None:
        """Merge ``loser`` into ``survivor``."""
        act = lambda: self._merge(name, survivor, loser)  # noqa: E731
        self._logged("merge", name, loser, {"into": survivor}, act)

    def fail_next(self, count: int, path: str | None = None) -> None:
        """The next ``count`` matching requests answer 503."""
        self.box.fail_next(count, status=503, path_contains=path)

    def drop_next(self, count: int = 1, path: str | None = None) -> None:
        """The next ``count`` matching requests are carried out, then their answer is lost."""
        self.box.drop_next_response(count, path_contains=path)

    def faults_off(self) -> None:
        """Forget every fault not yet spent."""
        self._clear_faults()

    def before_api_update(self, name: str, record_id: str, values: Values) -> None:
        """Called by the spies as an API update arrives: when ``concurrent_edit`` is armed,
        someone changes the same deal field in the CRM first (after the adapter checked the
        record's version, before its write lands)."""
        fields = [f for f in values if f in self.deal.fields]
        if self.concurrent_edit and not self._in_control and name == self.deal.object and fields:
            self.concurrent_edit = False
            self.update(name, str(record_id), {fields[0]: self.token("c")})

    def api_write(self, name: str, record_id: str, op: str, values: Values, before: Values) -> None:
        """Log a write that came in through the API (called by the spies)."""
        if not self._in_control:
            self.log.append(LoggedWrite("api", name, str(record_id), op, dict(values), before))
