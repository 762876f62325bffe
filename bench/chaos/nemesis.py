"""The nemesis's hand on the CRM: changes made inside the CRM and faults injected into its API,
all through the sandbox's admin path (``POST /__sandbox/<control>``).

``Crm`` speaks each sandbox's controls under one set of names; ``Nemesis`` picks, from its own
seeded random generator, what to change or break next, and keeps a log of every step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from bench.chaos.scenarios import Scenario

Admin = Callable[..., Any]
_OBJECT_ARG = {"salesforce": "sobject", "hubspot": "object_type", "dynamics": "table"}
_PARTNER_FLAG = {
    "salesforce": "IsPartner",
    "hubspot": "prm_is_partner",
    "dynamics": "prm_ispartner",
}
_READ_PATH = {"salesforce": "query", "hubspot": "search", "dynamics": "/api/data"}
_WRITE_PATH = {"salesforce": "composite", "hubspot": "batch", "dynamics": "$batch"}


class Crm:
    """One sandbox's controls under CRM-neutral names."""

    def __init__(self, crm: str, admin: Admin) -> None:
        self.crm = crm
        self.admin = admin
        self._arg = _OBJECT_ARG[crm]
        self._head = 0

    def log_head(self) -> int:
        """The sequence of the last entry of the write log."""
        while page := self.admin("write_log", after=self._head, limit=10_000):
            self._head = page[-1]["seq"]
        return self._head

    def call(self, control: str, name: str, **kwargs: Any) -> Any:
        """Run a control on the object ``name``."""
        return self.admin(control, **{self._arg: name}, **kwargs)

    def dump(self, name: str) -> dict[str, dict[str, Any]]:
        """Every record of ``name`` by id (deleted and merged ones too, where the CRM keeps
        them)."""
        return dict(self.call("dump", name))

    def live_ids(self, name: str) -> list[str]:
        """The ids of the live records of ``name``."""
        return [str(i) for i in self.call("ids", name)]

    def partners(self, name: str) -> set[str]:
        """The ids of the partner records of the partner object ``name``."""
        flag = _PARTNER_FLAG[self.crm]
        return {i for i, values in self.dump(name).items() if values.get(flag)}

    def update(self, name: str, record_id: str, values: dict[str, Any]) -> None:
        """Change a record inside the CRM."""
        self.call("update", name, record_id=record_id, values=values)

    def create(self, name: str, values: dict[str, Any]) -> str:
        """Create a record inside the CRM; its id."""
        return str(self.call("create", name, values=values))

    def delete(self, name: str, record_id: str) -> None:
        """Delete a record (to the recycle bin where the CRM has one)."""
        self.call("delete", name, record_id=record_id)

    def undelete(self, name: str, record_id: str) -> None:
        """Restore a deleted record."""
        control = "restore" if self.crm == "hubspot" else "undelete"
        self.call(control, name, record_id=record_id)

    def hard_delete(self, name: str, record_id: str) -> None:
        """Delete a record for good (only a sweep of ids finds out)."""
        self.call("hard_delete", name, record_id=record_id)

    def merge(self, name: str, survivor: str, loser: str) -> None:
        """Merge ``loser`` into ``survivor``."""
        key = "primary_id" if self.crm == "hubspot" else "master_id"
        self.call("merge", name, **{key: survivor}, loser_ids=[loser])

    def stamp(self, name: str, ids: list[str]) -> None:
        """Put records on one modification stamp: the CRM's clock now."""
        when = None if self.crm == "hubspot" else self.admin("now")
        self.call("set_modstamp", name, ids=ids, when=when)


class Nemesis:
    """Changes the CRM and breaks its API at random, from a seed."""

    def __init__(self, crm: Crm, scenario: Scenario, rng: random.Random, tokens: Any) -> None:
        self.crm = crm
        self.scenario = scenario
        self.rng = rng
        self.tokens = tokens
        self.partners: set[str] = set()
        self.streams = False
        self.deleted: list[tuple[str, str]] = []
        self.locked = False
        self.seen = 0
        self.log: list[dict[str, Any]] = []
        self._ids: dict[str, list[str]] = {}

    def mutate(self, recent_edits: list[Any]) -> None:
        """Make one change inside the CRM, chosen at random."""
        kinds = ["update", "update", "twice", "create", "delete", "hard_delete", "stamp"]
        recent_edits = [e for e in recent_edits if e.op == "update"]
        kinds += ["concurrent"] * 3 if recent_edits else []
        kinds += ["merge"] if self.scenario.mergeable else []
        kinds += ["undelete"] if self.scenario.undeletes and self.deleted else []
        kind = self.rng.choice(kinds)
        getattr(self, f"_{kind}")(recent_edits)

    def fault(self, recent_edits: list[Any]) -> None:
        """Break the CRM's API for a moment, chosen at random."""
        crm, rng = self.crm, self.rng
        where = rng.choice([None, _READ_PATH[crm.crm], _WRITE_PATH[crm.crm]])
        kinds = ["fail", "fail", "drop", "drop", "slow", "lock"]
        kinds += ["stream", "stream"] if self.streams else []
        kind = rng.choice(kinds + (["expire"] if crm.crm != "hubspot" else []))
        if kind == "stream":
            self._stream_fault()
            return
        if kind == "fail":
            status = rng.choice([503, 503, 500, 429] if crm.crm != "salesforce" else [503, 500])
            count = rng.choice([1, 1, 2, 2, 3, 5, 8])
            crm.admin("fail_next", count=count, status=status, path_contains=where)
        elif kind == "drop":
            crm.admin("drop_next_response", count=rng.randint(1, 2), path_contains=where)
        elif kind == "expire":
            crm.admin("expire_sessions" if crm.crm == "salesforce" else "expire_tokens")
        elif kind == "slow":
            delay = rng.choice([0.0, 0.0, 0.01, 0.03])
            crm.admin("slow_down" if crm.crm == "dynamics" else "throttle", delay_seconds=delay)
        elif crm.crm == "salesforce":
            self._lock(recent_edits)
        elif crm.crm == "dynamics":
            crm.admin("throttle", count=rng.randint(1, 3), retry_after=1)
            kind = "throttle"
        else:
            crm.admin("fail_next", count=rng.randint(1, 3), status=429, path_contains=where)
            kind = "throttle"
        self.log.append({"fault": kind, "path": where})

    def _stream_fault(self) -> None:
        """Break the Salesforce change stream: a lost, duplicated or reordered event, a gap
        event, or every subscription dropped."""
        rng = self.rng
        kind = rng.choice(["lose", "duplicate", "reorder", "gap", "drop"])
        if kind == "gap":
            name = rng.choice(self.scenario.objects)
            self.crm.admin("cdc_inject_gap", sobject=name)
        elif kind == "drop":
            self.crm.admin("cdc_drop_subscriptions")
        else:
            self.crm.admin(f"cdc_{kind}_next", count=rng.randint(1, 3))
        self.log.append({"fault": f"stream_{kind}", "path": None})

    def react(self) -> None:
        """Watch the CRM's write log: right after the engine wrote a field the portal edits,
        sometimes write that field again inside the CRM (often in the same second)."""
        for entry in self.crm.admin("write_log", after=self.seen, limit=1000):
            self.seen = entry["seq"]
            edited = [f for n, f in self.scenario.edited if n == entry["object"]]
            written = [f for f in edited if f in entry["fields"]]
            if entry["origin"] == "api" and written and self.rng.random() < 0.5:
                self._write(entry["object"], entry["record_id"], self.rng.choice(written))

    def fail_reads(self) -> None:
        """A burst of 503s on reads, which may outlast the engine's retries."""
        where = _READ_PATH[self.crm.crm]
        count = self.rng.choice([2, 4, 8])
        self.crm.admin("fail_next", count=count, status=503, path_contains=where)
        self.log.append({"fault": "fail", "path": where})

    def drop_a_write(self) -> None:
        """Lose the answer to the engine's next write (the CRM does the write)."""
        self.crm.admin("drop_next_response", count=1, path_contains=_WRITE_PATH[self.crm.crm])
        self.log.append({"fault": "drop", "path": _WRITE_PATH[self.crm.crm]})

    def calm(self) -> None:
        """Every fault off."""
        self.crm.admin("clear_faults")

    # -- the changes ---------------------------------------------------------------------------

    def _pick(self, name: str, *, partners: bool = True) -> str | None:
        if name not in self._ids or self.rng.random() < 0.2:
            self._ids[name] = sorted(self.crm.live_ids(name))
        ids = [i for i in self._ids[name] if partners or i not in self.partners]
        return self.rng.choice(ids) if ids else None

    def _note(self, kind: str, name: str, record_id: str | None, **extra: Any) -> None:
        self.log.append({"change": kind, "object": name, "id": record_id, **extra})

    def _update(self, _recent: list[Any]) -> None:
        name, field = self.rng.choice(self.scenario.edited + self.scenario.crm_only)
        record_id = self._pick(name)
        if record_id is not None:
            self._write(name, record_id, field)

    def _write(self, name: str, record_id: str, field: str) -> None:
        value = self.tokens.crm()
        try:
            self.crm.update(name, record_id, {field: value})
        except RuntimeError:
            return  # deleted or merged away meanwhile
        self._note("update", name, record_id, field=field, value=value)

    def _twice(self, recent: list[Any]) -> None:
        name, field = self.rng.choice(self.scenario.edited + self.scenario.crm_only)
        record_id = self._pick(name)
        if record_id is not None:
            self._write(name, record_id, field)
            time.sleep(self.rng.uniform(0.05, 0.6))
            self._write(name, record_id, field)

    def _concurrent(self, recent: list[Any]) -> None:
        edit = self.rng.choice(recent)
        fields = [f for n, f in self.scenario.edited if n == edit.object]
        field = edit.field if edit.field and self.rng.random() < 0.7 else self.rng.choice(fields)
        self._write(edit.object, edit.record_id, field)

    def _create(self, _recent: list[Any]) -> None:
        name = self.rng.choice(sorted(self.scenario.creates))
        value = self.tokens.crm()
        record_id = self.crm.create(name, {self.scenario.name_field[name]: value})
        self._note("create", name, record_id, value=value)

    def _victim(self) -> tuple[str, str | None]:
        names = sorted({n for n, _ in self.scenario.edited} | set(self.scenario.deletable))
        name = self.rng.choice(names)
        return name, self._pick(name, partners=False)

    def _delete(self, _recent: list[Any]) -> None:
        name, record_id = self._victim()
        if record_id is not None and self._try(self.crm.delete, name, record_id):
            self.deleted.append((name, record_id))
            self._note("delete", name, record_id)

    def _undelete(self, _recent: list[Any]) -> None:
        name, record_id = self.deleted.pop(self.rng.randrange(len(self.deleted)))
        if self._try(self.crm.undelete, name, record_id):
            self._note("undelete", name, record_id)

    def _hard_delete(self, _recent: list[Any]) -> None:
        record_id: str | None
        if self.deleted and self.rng.random() < 0.5:
            name, record_id = self.deleted.pop(self.rng.randrange(len(self.deleted)))
        else:
            name, record_id = self._victim()
        if record_id is not None and self._try(self.crm.hard_delete, name, record_id):
            self._note("hard_delete", name, record_id)

    def _merge(self, _recent: list[Any]) -> None:
        name = self.rng.choice(self.scenario.mergeable)
        survivor, loser = self._pick(name, partners=False), self._pick(name, partners=False)
        if (
            survivor
            and loser
            and survivor != loser
            and self._try(self.crm.merge, name, survivor, loser)
        ):
            self._note("merge", name, loser, survivor=survivor)

    def _stamp(self, _recent: list[Any]) -> None:
        name = self.scenario.bulk_stamped
        field = next(f for n, f in self.scenario.edited if n == name)
        self._pick(name)
        ids = self.rng.sample(self._ids[name], min(len(self._ids[name]), self.rng.randint(10, 60)))
        for record_id in ids:
            self._write(name, record_id, field)
        if self._try(self.crm.stamp, name, ids):
            self._note("stamp", name, None, count=len(ids))

    def _lock(self, recent: list[Any]) -> None:
        ids = [e.record_id for e in recent[-5:] if not e.record_id.startswith("local-")]
        if self.locked or not ids:
            self.crm.admin("unlock_rows")
            self.locked = False
        else:
            self.crm.admin("lock_rows", ids=ids)
            self.locked = True

    @staticmethod
    def _try(action: Callable[..., Any], *args: Any) -> bool:
        try:
            action(*args)
        except RuntimeError:
            return False  # the record went away meanwhile: the sandbox refused
        return True
