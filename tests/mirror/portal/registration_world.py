"""A Salesforce sandbox mirrored with deal registrations, shared by the registration tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirror import Mirror
from mirror.config import parse_config
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter

OBJECTS = ["User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem",
           "Deal_Registration__c"]  # fmt: skip
CLOSE = (dt.date.today() + dt.timedelta(days=60)).isoformat()


@contextmanager
def synced_mirror(db_url: str, box: SalesforceSandbox, **source: Any) -> Iterator[Mirror]:
    """A mirror of ``box`` in ``db_url`` after one sync; ``source`` adds source settings. A
    write whose answer was lost is retried by the next push, not after a backoff."""
    config = parse_config({
        "store": {"database": db_url},
        "sync": {"push_retry_delay": 0},
        "sources": {"salesforce": {"crm": "salesforce", "username": "u", "password": "p",
                                   "objects": OBJECTS, **source}},
    })  # fmt: skip
    mirror = Mirror(config, adapters={"salesforce": sandbox_adapter(box)})
    try:
        mirror.sync()
        yield mirror
    finally:
        mirror.close()


def ranked_partners(mirror: Mirror) -> list[str]:
    """Partner ids, the one with the most opportunities first."""
    ranked = sorted(mirror.partners(), key=lambda p: -p["slice"].get("Opportunity", 0))
    return [str(p["id"]) for p in ranked]
