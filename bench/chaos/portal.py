"""The portal under the nemesis: partners editing their slice through the embedded API, as a
portal app does (``Mirror.open(config).as_partner(partner, user=...)``), with a log of every
edit the mirror accepted.

Each edit writes one field (a create: its name field) to a value no other edit ever writes (a
token), so the checker can follow it into the CRM's write log. An edit is accepted when the call
returned, or when it raised but its outbox entry exists all the same (the mirror committed it
and a later step of the call failed).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.exc import SQLAlchemyError

from bench.chaos.scenarios import Scenario
from mirror import Mirror
from mirror.errors import MirrorError
from mirror.store.tables import mirror_outbox


class Tokens:
    """Values no other edit writes: ``portal-<n>`` for the portal, ``crm-<n>`` for the CRM."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def portal(self) -> str:
        """A value for one portal edit."""
        return f"portal-{next(self._numbers)}"

    def crm(self) -> str:
        """A value for one change made inside the CRM."""
        return f"crm-{next(self._numbers)}"


@dataclass(frozen=True)
class Edit:
    """One portal edit the mirror accepted (``field`` and ``value`` are ``None`` for a delete;
    ``record_id`` is the local id a create returned; ``log_head`` the last entry of the CRM's
    write log just after the edit was accepted)."""

    number: int
    op: str
    object: str
    record_id: str
    field: str | None
    value: str | None
    partner: str
    user: str | None
    at: float
    log_head: int = 0


class Portal:
    """Partners making edits at random, from a seed."""

    def __init__(
        self,
        config: Path,
        scenario: Scenario,
        rng: random.Random,
        tokens: Tokens,
        log_head: Callable[[], int],
    ) -> None:
        self.config = config
        self.log_head = log_head
        self.scenario = scenario
        self.rng = rng
        self.tokens = tokens
        self.edits: list[Edit] = []
        self.outcomes: Counter[str] = Counter()
        self._mirror: Mirror | None = None
        self._partners: list[str] = []
        self._ready = False

    @property
    def ready(self) -> bool:
        """Whether partners see records to edit (a first backfill derives partner access when
        it ends)."""
        return self._ready

    def close(self) -> None:
        """Release the mirror's connections."""
        if self._mirror is not None:
            self._mirror.close()
            self._mirror = None

    def act(self) -> Edit | None:
        """One partner edit, chosen at random; the edit when the mirror accepted it."""
        mirror = self._open()
        if mirror is None or not self._partners:
            self.outcomes["mirror not ready"] += 1
            return None
        partner = self.rng.choice(self._partners)
        as_user = self.rng.random() < 0.3
        ops = ["update"] * 7 + ["create"] * 2 + (["delete"] if self.scenario.deletable else [])
        op = self.rng.choice(ops)
        try:
            user = self._user(mirror, partner) if as_user else None
            view = mirror.as_partner(partner, user)
            edit = self._edit(mirror, view, op, partner, user)
        except KeyError:
            self._partners = []  # an object not mirrored yet: open the mirror again later
            edit = None
            self.outcomes["mirror not ready"] += 1
        except (MirrorError, SQLAlchemyError) as error:
            edit = None
            self.outcomes[f"refused: {type(error).__name__}"] += 1
        if edit is not None:
            self.outcomes["accepted"] += 1
        return edit

    def _open(self) -> Mirror | None:
        """The portal's mirror, opened again until the first sync has mirrored the partners
        (a mirror knows the tables that existed when it was opened)."""
        if self._partners and self.rng.random() > 0.05:
            return self._mirror
        try:
            if not self._partners:
                self.close()
                self._mirror = Mirror.open(self.config)
            assert self._mirror is not None
            self._partners = sorted(p["id"] for p in self._mirror.partners())
        except (KeyError, MirrorError, SQLAlchemyError):
            self._partners = []
        return self._mirror

    def _user(self, mirror: Mirror, partner: str) -> str | None:
        rules = mirror.visibility()
        if not (rules.user_object and rules.user_partner_field):
            return None
        users = mirror.store.mirrored(rules.source, rules.user_object)
        table = users.table
        query = select(table.c[users.spec.key]).where(
            table.c[rules.user_partner_field] == partner, table.c._deleted.is_(False)
        )
        with mirror.store.engine.connect() as conn:
            ids = sorted(conn.execute(query).scalars())
        return self.rng.choice(ids) if ids else None

    def _edit(
        self, mirror: Mirror, view: Any, op: str, partner: str, user: str | None
    ) -> Edit | None:
        if op == "create":
            name = self.rng.choice(sorted(self.scenario.creates))
            named, value = self.scenario.name_field[name], self.tokens.portal()
            values = {**self.scenario.creates[name], named: value}
            record_id = self._accepted(mirror, value, lambda: view.create(name, values))
            return self._log(op, name, record_id, named, value, partner, user)
        field: str | None
        if op == "update":
            name, field = self.rng.choice(self.scenario.edited)
        else:
            name, field = self.rng.choice(self.scenario.deletable), None
        picked = self._pick(mirror, view, name, partner, user)
        if picked is None:
            self.outcomes["nothing to edit"] += 1
            return None
        view, user, record_id = picked
        if field is None:
            view.delete(name, record_id)
            return self._log(op, name, record_id, None, None, partner, user)
        value = self.tokens.portal()
        self._accepted(mirror, value, lambda: view.update(name, record_id, {field: value}))
        self._ready = True
        return self._log(op, name, record_id, field, value, partner, user)

    def _pick(
        self, mirror: Mirror, view: Any, name: str, partner: str, user: str | None
    ) -> tuple[Any, str | None, str] | None:
        """A record of the slice: (the view, its user, the record's id)."""
        key = mirror.store.mirrored(view.source, name).spec.key
        rows = view.select(name, fields=[key], limit=50)
        if not rows and user is not None:
            # a rep who owns none of these: the partner's admin makes the edit instead
            view, user = mirror.as_partner(partner), None
            rows = view.select(name, fields=[key], limit=50)
        if not rows:
            return None
        return view, user, self.rng.choice(sorted(str(r[key]) for r in rows))

    def _log(
        self,
        op: str,
        name: str,
        record_id: str,
        field: str | None,
        value: str | None,
        partner: str,
        user: str | None,
    ) -> Edit:
        edit = Edit(len(self.edits) + 1, op, name, record_id, field, value, partner, user,
                    time.time(), self.log_head())  # fmt: skip
        self.edits.append(edit)
        return edit

    @staticmethod
    def _accepted(mirror: Mirror, token: str, call: Any) -> Any:
        """``call()``'s result; when it raised, whether its outbox entry was committed anyway
        (the local id of a create, ``True`` for an update), else the error again."""
        try:
            return call() or True
        except (MirrorError, SQLAlchemyError):
            o = mirror_outbox.c
            query = select(o.record_id).where(cast(o.new_values, Text).like(f'%"{token}"%'))
            with mirror.store.engine.connect() as conn:
                committed = conn.execute(query.limit(1)).scalar()
            if committed is None:
                raise
            return committed
