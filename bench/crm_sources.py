"""What ``bench.backfill --crm hubspot|dynamics`` needs to know of each CRM: the source settings
that reach its sandbox at the CRM's largest pages, the fewest read calls a backfill can make,
and the CRM-side edits of the incremental step.

Minimum read calls of one object's backfill, at the CRM's maxima (``docs/benchmarks.md``):

- HubSpot: list pages of 100 (``GET /crm/v3/objects/{type}``, HubSpot's maximum), one listing
  of the recycle bin, and per association target type one v4 ``batch/read`` per 1,000 records
  (its maximum). An edge object (the deal-company association rows) is read through its
  owners: their listing and one ``batch/read`` per 1,000 of them (``targets`` -1, ``records``
  the owners' count).
- Dataverse: one page per 5,000 rows (the Web API's largest ``odata.maxpagesize``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

HUBSPOT_LIST_MAX = 100
HUBSPOT_ASSOCIATION_BATCH_MAX = 1_000
DATAVERSE_PAGE_MAX = 5_000
DEALS = {"hubspot": "deals", "dynamics": "opportunity"}
OBJECT_ARGUMENT = {"hubspot": "object_type", "dynamics": "table"}
CLOCK_STEP_SECONDS = 120


def source_settings(crm: str, base_url: str, admin: Callable[..., Any]) -> dict[str, Any]:
    """The ``[sources.<crm>]`` settings that reach the sandbox at ``base_url``, with pages at
    the CRM's maxima and no client-side pacing below the sandbox's (raised) rate limits."""
    if crm == "hubspot":
        return {
            "crm": "hubspot",
            "host": base_url,
            "access_token": admin("access_token"),
            "page_size": HUBSPOT_ASSOCIATION_BATCH_MAX,
            "search_per_second": 10_000.0,
        }
    if crm == "dynamics":
        return {
            "crm": "dynamics",
            "org_url": base_url,
            "authority_url": base_url,
            "tenant_id": admin("tenant_id"),
            "client_id": admin("client_id"),
            "client_secret": admin("client_secret"),
            "page_size": DATAVERSE_PAGE_MAX,
        }
    raise ValueError(f"no benchmark source for {crm!r}")


def open_limits(crm: str, admin: Callable[..., Any]) -> None:
    """Raise the sandbox's request-rate limits above what one reader sends (page and batch
    limits stay as the CRM enforces them)."""
    if crm == "hubspot":
        admin("set_rate_limits", burst=10_000_000, daily=1_000_000_000, search_per_second=100_000)


def minimum_calls(
    crm: str, records: Mapping[str, int], targets: Mapping[str, int]
) -> dict[str, int]:
    """The fewest read calls of each object's backfill (module docstring); ``targets`` is the
    number of association target types each HubSpot object reads, ``-1`` for an edge object."""
    minimum = {}
    for name, count in records.items():
        if crm == "dynamics":
            minimum[name] = max(1, math.ceil(count / DATAVERSE_PAGE_MAX))
            continue
        linked = targets.get(name, 0)
        pages = max(1, math.ceil(count / HUBSPOT_LIST_MAX))
        batches = math.ceil(count / HUBSPOT_ASSOCIATION_BATCH_MAX)
        if linked < 0:  # edges: the owners' listing and their associations, no recycle bin
            minimum[name] = pages + batches
            continue
        minimum[name] = pages + 1 + linked * batches
    return minimum


def edit_deals(
    crm: str, admin: Callable[..., Any], ids: list[str], count: int, rng: random.Random
) -> list[str]:
    """Advance the sandbox clock, then edit ``count`` random deals (opportunities) through the
    sandbox's admin path, as users of the CRM would; returns their ids."""
    chosen = rng.sample(ids, min(count, len(ids)))
    admin("advance_clock", seconds=CLOCK_STEP_SECONDS)
    key = OBJECT_ARGUMENT[crm]
    for record_id in chosen:
        amount = 1_000 * rng.randint(1, 900)
        note = f"benchmark edit {rng.randint(0, 10**9)}"
        if crm == "hubspot":
            values: dict[str, Any] = {"amount": str(amount), "description": note}
        else:
            values = {"estimatedvalue": float(amount), "description": note}
        admin("update", **{key: DEALS[crm]}, record_id=record_id, values=values)
    return chosen
