"""Fetching Salesforce records by id, for dry-run diffs and the self-audit.

One ``queryAll`` per planned part: ``SELECT <fields> FROM X WHERE Id IN (...)``, deleted
records included (with ``IsDeleted``). The ids are packed so that each statement stays within
SOQL's 100,000 characters (the connection sends it in the URL when that fits and through
Composite when not), at most 200 ids a statement; an object so wide that one id with every
field is over that limit is read in field parts joined per record (``url_budget``). Each
answer is followed through ``nextRecordsUrl``, since Salesforce returns fewer rows per page
than asked when the rows are wide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from adapters._kit.url_budget import FetchShape, fetch_joined
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.soql import SOQL_LIMIT
from adapters.salesforce.types import KEY_FIELD, to_18
from mirror.types import ObjectSpec

FETCH_BATCH = 200
_ID_COST = len("'001000000000000AAA', ")


def fetch_shape(spec: ObjectSpec) -> FetchShape:
    """How the fetch statement of ``spec`` grows with its fields and ids."""
    return FetchShape(
        limit=SOQL_LIMIT,
        fixed=len(f"SELECT  FROM {spec.name} WHERE {KEY_FIELD} IN ()"),
        field_cost=lambda name: len(name) + 2,
        id_cost=lambda _record_id: _ID_COST,
        max_ids=FETCH_BATCH,
    )


def fetch_rows(
    conn: SalesforceConnection, spec: ObjectSpec, ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The query rows of ``ids`` with every field of ``spec`` (missing ids left out)."""

    def run(chunk: list[str], fields: list[str]) -> Iterator[dict[str, Any]]:
        quoted = ", ".join(f"'{record_id}'" for record_id in chunk)
        soql = f"SELECT {', '.join(fields)} FROM {spec.name} WHERE {KEY_FIELD} IN ({quoted})"
        answer = conn.query(soql, include_deleted=True, action=f"reading {spec.name} records")
        while True:
            yield from answer["records"]
            if answer.get("done", True) or not answer.get("nextRecordsUrl"):
                return
            answer = conn.query_more(answer["nextRecordsUrl"], f"paging {spec.name} records")

    return fetch_joined(
        fetch_shape(spec),
        [to_18(i) for i in ids],
        spec.field_names,
        key=KEY_FIELD,
        pinned=[KEY_FIELD, spec.cursor_field],
        version=spec.cursor_field,
        run=run,
        normalize=lambda value: to_18(str(value or "")),
    )
