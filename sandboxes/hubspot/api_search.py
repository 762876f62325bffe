"""``POST /crm/v3/objects/{type}/search``: filtered, sorted, offset-paged and capped.

Archived and merged-away records are never found. ``total`` counts every match, also beyond the
cap, and ``paging.next.after`` is offered while more matches exist, so a client that simply
follows it runs into HubSpot's 400 at the 10,000th result, as it would against HubSpot.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.search import Compiler, parse_request
from sandboxes.kit.server import json_response, read_json


def search(portal: Portal, request: Request, object_type: str) -> Response:
    """Answer one search request."""
    kind = portal.records.object_type(object_type)
    wanted = parse_request(read_json(request), portal.search_cap)
    compiled = Compiler(kind).compile(wanted)
    total = int(
        portal.store.scalar(
            f"SELECT COUNT(*) FROM hs_objects WHERE {compiled.where}", compiled.params
        )
    )
    rows = portal.store.select(
        f"WHERE {compiled.where} ORDER BY {compiled.order} LIMIT ? OFFSET ?",
        (*compiled.params, wanted.limit, wanted.offset),
    )
    properties = list(wanted.properties)
    reply: dict[str, Any] = {
        "total": total,
        "results": [portal.records.to_json(kind, row, properties) for row in rows],
    }
    following = wanted.offset + len(rows)
    if rows and following < total:
        reply["paging"] = {"next": {"after": str(following), "link": f"?after={following}"}}
    return json_response(reply)
