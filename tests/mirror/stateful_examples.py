"""Step sequences of the stateful machine that found failures, kept and replayed as they are.

Random search finds a failure now and then; each sequence here is the smallest one found for a
failure, written out so every run replays it on each CRM (the machine's steps are CRM-neutral).
A sequence whose family is still pending for a CRM (``PENDING`` in its test module) runs marked
with the failure it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.mirror.crm_driver import CrmDriver
from tests.mirror.stateful_machine import ALL_FEATURES, MirrorMachine

Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Found:
    """A sequence of steps after a first backfill, and the family of steps it belongs to."""

    family: str
    backfill: dict[str, Any]
    steps: tuple[Step, ...] = ()
    policy: str = "manual"


QUIET: dict[str, Any] = {"at": 1, "changes": [], "interruption": ("none", 0)}
SYNC: Step = ("sync", {**QUIET, "advance": 1, "after": "nothing"})
UPDATE: Step = ("portal_write", {"kind": "update", "index": 1, "field": 1})
CREATE: Step = ("portal_write", {"kind": "create", "index": 1, "field": 0})


def push(fault: str = "none", advance: int = 1) -> Step:
    """A push through ``fault``."""
    return "push", {"fault": fault, "advance": advance}


def crm(kind: str, advance: int = 1) -> Step:
    """A CRM change of ``kind`` (``contested``: the field the portal edited last)."""
    return "crm_change", {"kind": kind, "index": 1, "count": 1, "advance": advance}


def lifecycle(kind: str, index: int = 1, other: int = 2) -> Step:
    """A delete, restore, hard delete or merge in the CRM."""
    return "crm_lifecycle", {"kind": kind, "index": index, "other": other}


FOUND = {
    # a record not yet read is changed in the backfill's first second; a later page fails
    "resumed_backfill": Found(
        "mid_sync", {"at": 1, "changes": [("ahead", 0)], "interruption": ("fail_past", 1)}
    ),
    # a record already read changes in the query's first second, one not read yet a second later
    "first_second": Found("mid_sync", {**QUIET, "changes": [("delivered", 0), ("ahead", 1)]}),
    # the CRM changes the field the portal wrote, in the second of the write
    "echo_second": Found("same_second", QUIET, (UPDATE, push(), crm("contested", 0))),
    # the CRM changes the field between the pusher's version check and its write
    "between_check_and_write": Found("concurrent_edits", QUIET, (UPDATE, push("edit"))),
    # the CRM made the record, the answer was lost past the retry budget, then a sync
    "lost_create": Found("lost_creates", QUIET, (CREATE, push("drop_all"), SYNC, push())),
    # the CRM has the value, the answer was lost, then someone changes the field in the CRM
    "lost_update": Found(
        "lost_updates", QUIET, (UPDATE, push("drop_all"), crm("contested")), "portal_wins"
    ),
    # the partner updates the deal it created by the id create() returned, after the push
    "local_id": Found(
        "local_ids",
        QUIET,
        (CREATE, push(), ("portal_write", {**CREATE[1], "kind": "update_created"})),
    ),
    # a pushed edit waits for its echo; the record is deleted in the CRM
    "deleted_after_push": Found("deletes", QUIET, (UPDATE, push(), lifecycle("delete"))),
    # a deal deleted in the CRM, then the backfill started again
    "delete_then_restart": Found(
        "restarts", QUIET, (lifecycle("delete"), ("sync", {**SYNC[1], "after": "restart"}))
    ),
    # a create's answer dropped once, the created deal edited before any pull read it, the
    # field changed in the CRM: the edit went out with no precondition, over the CRM's value
    "lost_update_of_a_created_deal": Found(
        "lost_updates",
        {
            "at": 4,
            "changes": [("delivered", 979), ("delivered", 8718)],
            "interruption": ("none", 0),
        },
        (
            lifecycle("delete", 0, 0),
            ("portal_write", {"kind": "create", "index": 0, "field": 0}),
            lifecycle("hard_delete", 2, 1),
            push("drop"),
            lifecycle("hard_delete", 1, 3),
            ("crm_change", {"kind": "contested", "index": 846, "count": 260, "advance": 2}),
            ("portal_write", {"kind": "update_created", "index": 0, "field": 1}),
            ("portal_write", {"kind": "create", "index": 0, "field": 1}),
            ("portal_write", {"kind": "create", "index": 0, "field": 1}),
            ("crm_change", {"kind": "side", "index": 3722, "count": 181, "advance": 1}),
            ("crm_change", {"kind": "contested", "index": 404, "count": 1, "advance": 0}),
            push(),
            ("crm_change", {"kind": "account", "index": 273, "count": 238, "advance": 2}),
            ("crm_change", {"kind": "side", "index": 5273, "count": 259, "advance": 1}),
            ("portal_write", {"kind": "update_created", "index": 2, "field": 0}),
            push("drop_all"),
            ("portal_write", {"kind": "update", "index": 0, "field": 0}),
            push(),
            lifecycle("merge", 2, 2),
        ),
    ),
    # an edit blocked by a CRM change; the record is then hard-deleted
    "hard_deleted_while_blocked": Found(
        "hard_deletes", QUIET, (UPDATE, crm("contested"), push(), lifecycle("hard_delete"))
    ),
}


def found_params(
    driver_class: type[CrmDriver], pending: dict[str, str], skip: tuple[str, ...] = ()
) -> list[Any]:
    """One parameter per kept sequence (but ``skip``), marked when its family is pending."""
    return [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=False, reason=pending[found.family])]
            if found.family in pending
            else [],
            id=name,
        )
        for name, found in FOUND.items()
        if name not in skip
    ]


def replay(driver_class: type[CrmDriver], name: str) -> None:
    """Run kept sequence ``name`` against ``driver_class``'s sandbox (SQLite), every family on,
    then bring the mirror to rest and check it as the machine does."""
    found = FOUND[name]
    machine_class = type(
        f"{driver_class.__name__}Replay",
        (MirrorMachine,),
        {"driver_class": driver_class, "features": ALL_FEATURES},
    )
    machine = machine_class()
    try:
        machine.backfill(policy=found.policy, **found.backfill)
        for rule, arguments in found.steps:
            getattr(machine, rule)(**arguments)
    except BaseException:
        machine.stack.close()
        raise
    machine.teardown()
