"""The versions a Dataverse write is checked against, read in one ``$batch`` of queries.

The writer needs each checked row's ``modifiedon``, ``@odata.etag`` and the fields its update
sets (``write.BatchWriter._current``). Read one query per 50 ids, that is 20 requests per
1,000 rows, more calls than the writes themselves. Here the same queries go as the parts of one
``$batch`` (up to 1,000 of them: 50,000 rows a call), so checking a call's writes costs one
request in all; a query that Dataverse answers with an error, or with a next page, is read on
its own with the connection's retries (``fetch.fetch_rows``). A single query (up to 50 rows),
and queries too long for a ``$batch`` part, go through ``fetch.fetch_rows`` as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters._kit.url_budget import url_bytes
from adapters._kit.writes import chunked
from adapters.dynamics import batch
from adapters.dynamics.client import BATCHED_URL_BUDGET, ODATA_HEADERS, DataverseConnection
from adapters.dynamics.fetch import FETCH_CHUNK, fetch_rows, query_link
from adapters.dynamics.settings import MAX_BATCH_REQUESTS
from adapters.dynamics.types import TableInfo
from mirror.errors import CrmError
from mirror.types import ObjectSpec


def read_versions(
    conn: DataverseConnection,
    spec: ObjectSpec,
    table: TableInfo,
    ids: Sequence[str],
    select: Sequence[str],
) -> list[dict[str, Any]]:
    """The rows of ``ids`` (missing ones left out) with the columns ``select``, read through
    ``$batch`` (see the module docstring)."""
    chunks = [list(chunk) for chunk in chunked(list(dict.fromkeys(ids)), FETCH_CHUNK)]
    urls = [conn.url(_query(spec, table, chunk, select)) for chunk in chunks]
    # one query costs one request either way; a $batch only pays from two
    if len(chunks) < 2 or any(url_bytes(url) > BATCHED_URL_BUDGET for url in urls):
        return fetch_rows(conn, spec, table, ids, select=",".join(select))
    rows: list[dict[str, Any]] = []
    pairs = list(zip(chunks, urls, strict=True))
    for group in chunked(pairs, MAX_BATCH_REQUESTS):
        rows += _read_group(conn, spec, table, list(group), select)
    return rows


def _query(spec: ObjectSpec, table: TableInfo, ids: Sequence[str], select: Sequence[str]) -> str:
    condition = " or ".join(f"{spec.key} eq {record_id}" for record_id in ids)
    return query_link(table, {"$select": ",".join(select), "$filter": condition})


def _read_group(
    conn: DataverseConnection,
    spec: ObjectSpec,
    table: TableInfo,
    group: list[tuple[list[str], str]],
    select: Sequence[str],
) -> list[dict[str, Any]]:
    requests = [batch.BatchRequest("GET", url, dict(ODATA_HEADERS)) for _, url in group]
    content_type, body = batch.build(requests)
    response = conn.request(
        "POST",
        "$batch",
        action=f"reading the versions of {sum(len(ids) for ids, _ in group)} {spec.name} rows",
        data=body,
        headers={"Content-Type": content_type},
        prefer="odata.continue-on-error",
    )
    answers = batch.parse(response.headers.get("Content-Type", ""), response.content)
    if len(answers) != len(group):
        raise CrmError(
            f"Dataverse answered {len(answers)} of {len(group)} $batch queries",
            status=response.status_code,
        )
    rows: list[dict[str, Any]] = []
    again: list[str] = []
    for (ids, _), answer in zip(group, answers, strict=True):
        page = answer.json() if answer.status < 400 else {}
        if answer.status >= 400 or page.get("@odata.nextLink"):
            again += ids
        else:
            rows += page.get("value") or []
    if again:
        rows += fetch_rows(conn, spec, table, again, select=",".join(select))
    return rows
