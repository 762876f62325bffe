"""Running the stateful machine (``tests/mirror/stateful_machine.py``) as a bounded test.

``PRM_MIRROR_HYPOTHESIS_EXAMPLES`` (examples per test) and ``PRM_MIRROR_HYPOTHESIS_STEPS``
(steps per example) make a run longer; ``PRM_MIRROR_HYPOTHESIS_SHRINK=0`` skips shrinking a
failure (quicker to see that one exists than to see it small).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.mirror.crm_driver import CrmDriver
from tests.mirror.stateful_machine import ALL_FEATURES, MirrorMachine

# the known failure each step family finds while it is not fixed (``pending_params``)
FAILS = {
    "mid_sync": "a change made while a sync pages through its query, in the second the query"
    " began or the next, moves the checkpoint past records not read yet: a resumed backfill"
    " skips them and a record delivered earlier keeps its old values",
    "same_second": "a CRM edit in the second of our own write is taken for its echo: the"
    " mirror keeps the portal's value, the CRM another",
    "concurrent_edits": "a CRM edit landing between the pusher's version check and its write"
    " is overwritten with no conflict recorded",
    "lost_creates": "a create whose answer was lost, then a sync: the swap of the local id"
    " violates the primary key and every later push fails",
    "lost_updates": "an update whose answer was lost is sent again after a CRM change made"
    " since it landed: applied twice, the later CRM change reverted under portal_wins",
    "local_ids": "after the push, the local id create() returned no longer reaches the record",
    "restarts": "a backfill started again leaves live in the mirror the records deleted or merged"
    " away in the CRM before it began",
    "deletes": "a portal edit pushed and waiting for its echo stays open for good when its"
    " record is then deleted in the CRM",
    "hard_deletes": "a portal edit blocked by a CRM change stays blocked for good when its record"
    " is then hard-deleted",
}


def examples(default: int = 6) -> int:
    """Examples per test: ``PRM_MIRROR_HYPOTHESIS_EXAMPLES``, else ``default``."""
    return int(os.environ.get("PRM_MIRROR_HYPOTHESIS_EXAMPLES", default))


def steps(default: int = 20) -> int:
    """Steps per example: ``PRM_MIRROR_HYPOTHESIS_STEPS``, else ``default``."""
    return int(os.environ.get("PRM_MIRROR_HYPOTHESIS_STEPS", default))


def base_features(pending: Mapping[str, str]) -> frozenset[str]:
    """Every step family but those with a known failure not fixed yet."""
    return ALL_FEATURES - set(pending)


def pending_params(pending: Mapping[str, str]) -> list[Any]:
    """One marked parameter per pending step family, ``reason`` naming the failure it finds."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=reason), id=name)
        for name, reason in sorted(pending.items())
    ]


def run_machine(
    driver_class: type[CrmDriver],
    backend: str,
    features: frozenset[str] = ALL_FEATURES,
    *,
    pending: bool = False,
) -> None:
    """Run the machine against ``driver_class``'s sandbox on ``backend`` with ``features``.

    PostgreSQL runs half the examples (its statements cost the time, not the engine's logic),
    and a ``pending`` run (of a family with a known failure, expected to fail) one in six,
    not shrunk."""
    if pending:
        count = max(1, examples() // 6)
    else:
        count = max(1, examples() // 2) if backend == "postgresql" else examples()
    machine = type(
        f"{driver_class.__name__}Machine",
        (MirrorMachine,),
        {"driver_class": driver_class, "backend": backend, "features": features},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=count,
            stateful_step_count=steps(),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=_phases(shrink=not pending),
        ),
    )


def _phases(*, shrink: bool) -> tuple[Phase, ...]:
    """Every phase but explain (each example costs seconds); without shrinking unless
    ``shrink`` and ``PRM_MIRROR_HYPOTHESIS_SHRINK`` is not ``0``."""
    if not shrink or os.environ.get("PRM_MIRROR_HYPOTHESIS_SHRINK") == "0":
        return (Phase.explicit, Phase.reuse, Phase.generate)
    return (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
