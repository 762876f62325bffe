"""CRM-side edits for the incremental benchmarks, made through the sandbox's admin path.

A batch edits ``count`` opportunities picked at random (seeded) from a SQLite mirror: every one
gets a new ``Amount`` and ``NextStep``, and one in ten moves to another partner, so the access
table has real grants to move as well as records whose slice stays the same.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.sandbox_process import SandboxProcess
from sandboxes.testing.admin import AdminClient

OPPORTUNITY_TABLE = "salesforce__opportunity"
ACCOUNT_TABLE = "salesforce__account"
MOVE_EVERY = 10
CLOCK_STEP_SECONDS = 120


@dataclass(frozen=True)
class Population:
    """The ids edits are drawn from."""

    opportunities: list[str]
    partners: list[str]


def population(mirror_db: Path) -> Population:
    """Opportunity and partner-account ids of a SQLite mirror, in id order."""
    with sqlite3.connect(mirror_db) as conn:
        opportunities = [
            row[0]
            for row in conn.execute(
                f'SELECT "Id" FROM {OPPORTUNITY_TABLE} WHERE NOT _deleted ORDER BY "Id"'
            )
        ]
        partners = [
            row[0]
            for row in conn.execute(
                f'SELECT "Id" FROM {ACCOUNT_TABLE} WHERE "IsPartner" AND NOT _deleted ORDER BY "Id"'
            )
        ]
    return Population(opportunities, partners)


def edit_opportunities(
    sandbox: SandboxProcess | AdminClient,
    people: Population,
    count: int,
    rng: random.Random,
) -> list[str]:
    """Advance the sandbox clock, then edit ``count`` random opportunities; returns their ids."""
    chosen = rng.sample(people.opportunities, min(count, len(people.opportunities)))
    sandbox.admin("advance_clock", seconds=CLOCK_STEP_SECONDS)
    for position, record_id in enumerate(chosen):
        values: dict[str, object] = {
            "Amount": float(1_000 * rng.randint(1, 900)),
            "NextStep": f"benchmark edit {rng.randint(0, 10**9)}",
        }
        if position % MOVE_EVERY == 0 and people.partners:
            values["PartnerAccountId"] = rng.choice(people.partners)
        sandbox.admin("update", sobject="Opportunity", record_id=record_id, values=values)
    return chosen
