"""Fetching Dataverse rows by id, for diffs, the self-audit and the writer's version checks.

``GET <set>?$select=<columns>&$filter=<key> eq <id> or ...``, at most 50 ids a request. The
ids are packed so that each URL stays within what Dataverse takes inside ``$batch`` (65,536
characters): the connection sends a URL of up to 32,768 characters directly and a longer one
through ``$batch``. A table so wide that one id with every column is still longer is read in
column parts joined per row by its key; each part carries the row's ``@odata.etag``, so a row
that changed between parts is read again (``url_budget``). Answers are followed through
``@odata.nextLink``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from adapters._kit.url_budget import FetchShape, fetch_joined, url_bytes
from adapters.dynamics.client import BATCHED_URL_BUDGET, DataverseConnection
from adapters.dynamics.types import TableInfo
from mirror.types import ObjectSpec

FETCH_CHUNK = 50
VERSION = "@odata.etag"
_SAFE = "$,'():"


def query_link(table: TableInfo, options: Mapping[str, str]) -> str:
    """``<set>?<options>`` encoded as the reads encode it."""
    return f"{table.set_name}?" + urlencode(options, safe=_SAFE, quote_via=quote)


def fetch_shape(conn: DataverseConnection, spec: ObjectSpec, table: TableInfo) -> FetchShape:
    """How the fetch URL of ``table`` grows with its columns and ids."""
    base = conn.url(query_link(table, {"$select": "", "$filter": ""}))
    separator = quote(" or ", safe=_SAFE)
    return FetchShape(
        limit=BATCHED_URL_BUDGET,
        fixed=url_bytes(base),
        field_cost=lambda name: len(quote(name, safe=_SAFE)) + 1,
        id_cost=lambda record_id: (
            url_bytes(quote(f"{spec.key} eq {record_id}", safe=_SAFE)) + len(separator)
        ),
        max_ids=FETCH_CHUNK,
    )


def fetch_rows(
    conn: DataverseConnection,
    spec: ObjectSpec,
    table: TableInfo,
    ids: Iterable[str],
    select: str | None = None,
) -> list[dict[str, Any]]:
    """The current Web API rows of ``ids`` (missing ones left out), with the columns of
    ``select`` (default: every column of ``spec``)."""
    wanted = [str(i).lower() for i in ids]
    columns = select.split(",") if select else list(spec.field_names)

    def run(chunk: list[str], fields: list[str]) -> Iterator[dict[str, Any]]:
        condition = " or ".join(f"{spec.key} eq {record_id}" for record_id in chunk)
        link: str | None = query_link(table, {"$select": ",".join(fields), "$filter": condition})
        while link:
            body = conn.get_json(link, action=f"reading {spec.name} records")
            yield from body.get("value") or []
            link = body.get("@odata.nextLink")

    return fetch_joined(
        fetch_shape(conn, spec, table),
        wanted,
        columns,
        key=spec.key,
        pinned=[spec.key],
        version=VERSION,
        run=run,
        normalize=lambda value: str(value or "").lower(),
    )
