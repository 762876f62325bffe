"""Collection reads of the Dataverse sandbox: queries, paging and change tracking.

- Queries: ``$select``, ``$filter`` (compiled to SQL), ``$orderby`` (the primary key breaks
  ties), ``$top`` and ``$count`` (capped at 5,000 with the
  ``@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded`` flag, as Dataverse caps it).
- Paging: at most 5,000 rows a page, fewer with ``Prefer: odata.maxpagesize``; ``$top`` is
  ignored when a page size is preferred; ``$skip`` is refused. ``@odata.nextLink`` is absolute
  and carries a ``$skiptoken`` paging cookie that holds the last row's sort values, so the next
  page continues after that row however the table changed meanwhile (keyset paging).
- Change tracking (``Prefer: odata.track-changes``): the first read returns every row as of a
  snapshot row version, in row-version order, and its last page carries ``@odata.deltaLink``
  with ``$deltatoken=<version>!<MM/dd/yyyy HH:mm:ss>``; a delta read returns rows changed since
  the token (full selected columns) and then ``$deletedEntity`` tombstones. Tokens older than
  ``expire_change_tracking_days`` (or below the organisation's delta floor) are a 400 with
  ``0x80044352``; ``$filter``, ``$orderby``, ``$top`` and ``$expand`` are 400s with tracking.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote, urlencode

import orjson
from werkzeug.datastructures import MultiDict

from sandboxes.dynamics.errors import EXPIRED_VERSION_STAMP, DataverseError
from sandboxes.dynamics.odata import (
    OrderItem,
    check_select,
    compile_filter,
    no_property,
    parse_filter,
    parse_orderby,
    parse_select,
    query_error,
)
from sandboxes.dynamics.org import MAX_PAGE_SIZE, DataverseOrg
from sandboxes.dynamics.schema import Attribute, Entity
from sandboxes.dynamics.shape import Annotations, RowWriter
from sandboxes.dynamics.store import quote

KNOWN_OPTIONS = frozenset(
    {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken", "$expand",
     "$skip", "$apply", "$search", "$format"}
)  # fmt: skip
TRACKING_REFUSED = ("$filter", "$orderby", "$top", "$expand")
COUNT_CAP = 5000


@dataclass(frozen=True)
class Query:
    """One collection request, parsed and checked."""

    entity: Entity
    args: Mapping[str, str]
    selected: list[Attribute] | None
    page_size: int
    annotations: Annotations
    track: bool
    page_size_preferred: bool = False


def parse_query(
    org: DataverseOrg, entity: Entity, args: MultiDict[str, str], prefer: Mapping[str, Any]
) -> Query:
    """Check a collection request's options against ``entity``."""
    for name in args:
        if name.startswith("$") and name not in KNOWN_OPTIONS:
            raise query_error(f"The query parameter {name} is not supported")
    for name in ("$skip", "$apply", "$search"):
        if name in args:
            raise query_error(f"The query parameter {name} is not supported")
    track = "odata.track-changes" in prefer or "$deltatoken" in args
    if track:
        if not entity.change_tracking:
            raise query_error(
                f"Change tracking is not enabled for the entity '{entity.name}'. Enable "
                "'Track changes' on the table to use odata.track-changes."
            )
        for name in TRACKING_REFUSED:
            if name in args:
                raise query_error(
                    f'The "{name}" query parameter isn\'t supported when Change Tracking is '
                    "enabled."
                )
    elif "$expand" in args:
        raise query_error("$expand is not supported on data queries by the sandbox.")
    select = args.get("$select")
    selected = check_select(entity, parse_select(select)) if select else None
    return Query(
        entity=entity,
        args=args.to_dict(),
        selected=selected,
        page_size=_page_size(prefer),
        annotations=Annotations(prefer.get("odata.include-annotations")),
        track=track,
        page_size_preferred="odata.maxpagesize" in prefer,
    )


def _page_size(prefer: Mapping[str, Any]) -> int:
    raw = prefer.get("odata.maxpagesize")
    if raw is None:
        return MAX_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise query_error(f"Invalid value '{raw}' for odata.maxpagesize.") from None
    if size < 1:
        raise query_error("odata.maxpagesize must be a positive number.")
    return min(size, MAX_PAGE_SIZE)


# --- paging cookies -------------------------------------------------------------------------


def encode_cookie(state: Mapping[str, Any], page: int, tracking: bool) -> str:
    """A ``$skiptoken`` value in Dataverse's paging-cookie shape."""
    inner = base64.urlsafe_b64encode(orjson.dumps(state)).decode()
    return (
        f'<cookie pagenumber="{page}" pagingcookie="{url_quote(inner)}" istracking="{tracking}" />'
    )


def decode_cookie(token: str) -> tuple[dict[str, Any], int]:
    """The state and page number of a ``$skiptoken``; 400 when it is not one of ours."""
    try:
        inner = unquote(token.split('pagingcookie="', 1)[1].split('"', 1)[0])
        page = int(token.split('pagenumber="', 1)[1].split('"', 1)[0])
        return orjson.loads(base64.urlsafe_b64decode(inner.encode())), page
    except (IndexError, ValueError, orjson.JSONDecodeError):
        raise query_error("The $skiptoken value is not valid.") from None


def _link(org: DataverseOrg, path: str, params: Mapping[str, str]) -> str:
    return f"{org.base_url}{path}?" + urlencode(params, quote_via=url_quote, safe="$,'")


# --- plain queries ----------------------------------------------------------------------------


def run_query(org: DataverseOrg, query: Query, path: str) -> dict[str, Any]:
    """The answer to a plain (untracked) collection query."""
    entity = query.entity
    params: list[Any] = []
    conditions: list[str] = []
    if query.args.get("$filter"):
        conditions.append(compile_filter(parse_filter(query.args["$filter"]), entity, params))
    base_conditions, base_params = list(conditions), list(params)
    order = _order(entity, query.args.get("$orderby"))
    cookie, page_number = _cookie(query)
    if cookie is not None:
        conditions.append(_after(order, cookie["after"], params))
    limit = query.page_size
    preferred = query.page_size_preferred
    top = _top(query)
    if top is not None and not preferred:
        limit = min(limit, top)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order_sql = ", ".join(_order_term(a, desc) for a, desc in order)
    rows = org.store.query(
        f"SELECT * FROM {quote(entity.name)}{where} ORDER BY {order_sql} LIMIT ?",
        [*params, limit + 1],
    )
    more = len(rows) > limit and not (top is not None and not preferred)
    rows = rows[:limit]
    body: dict[str, Any] = {"@odata.context": _context(org, entity, query.selected)}
    if query.args.get("$count") == "true":
        body.update(_count(org, entity, base_conditions, base_params))
    body["value"] = RowWriter(org.store, entity, query.selected, query.annotations).render(rows)
    if more and rows:
        last = rows[-1]
        state = {"after": [last[a.name] for a, _ in order]}
        params_out = {k: v for k, v in query.args.items() if k != "$skiptoken"}
        params_out["$skiptoken"] = encode_cookie(state, page_number + 1, False)
        body["@odata.nextLink"] = _link(org, path, params_out)
    return body


def _top(query: Query) -> int | None:
    raw = query.args.get("$top")
    if raw is None:
        return None
    if not raw.isdigit():
        raise query_error(f"Invalid value '{raw}' for $top query option found.")
    return int(raw)


def _cookie(query: Query) -> tuple[dict[str, Any] | None, int]:
    token = query.args.get("$skiptoken")
    if token is None:
        return None, 1
    return decode_cookie(token)


def _order(entity: Entity, text: str | None) -> list[tuple[Attribute, bool]]:
    items: list[OrderItem] = parse_orderby(text) if text else []
    order = []
    for item in items:
        attribute = entity.by_wire_name.get(item.name)
        if attribute is None:
            raise no_property(entity, item.name)
        order.append((attribute, item.descending))
    key = entity.by_name[entity.primary_id]
    if all(attribute is not key for attribute, _ in order):
        order.append((key, False))
    return order


def _collate(attribute: Attribute) -> str:
    return " COLLATE NOCASE" if attribute.edm_type == "Edm.String" else ""


def _order_term(attribute: Attribute, descending: bool) -> str:
    return f"{quote(attribute.name)}{_collate(attribute)} {'DESC' if descending else 'ASC'}"


def _after(order: Sequence[tuple[Attribute, bool]], last: Sequence[Any], params: list) -> str:
    """The keyset condition "sorts after ``last``" (SQLite: nulls first ascending)."""
    alternatives = []
    for position, (attribute, descending) in enumerate(order):
        parts = []
        for (earlier, _), value in zip(order[:position], last[:position], strict=True):
            parts.append(f"{quote(earlier.name)}{_collate(earlier)} IS ?")
            params.append(value)
        column, value = f"{quote(attribute.name)}{_collate(attribute)}", last[position]
        if value is None:
            parts.append("0" if descending else f"{quote(attribute.name)} IS NOT NULL")
        elif descending:
            parts.append(f"({column} < ? OR {quote(attribute.name)} IS NULL)")
            params.append(value)
        else:
            parts.append(f"{column} > ?")
            params.append(value)
        alternatives.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _count(org: DataverseOrg, entity: Entity, conditions: list[str], params: list) -> dict:
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    total = int(org.store.scalar(f"SELECT COUNT(*) FROM {quote(entity.name)}{where}", params))
    answer: dict[str, Any] = {"@odata.count": min(total, COUNT_CAP)}
    if total > COUNT_CAP:
        answer["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
    return answer


def _context(org: DataverseOrg, entity: Entity, selected: list[Attribute] | None) -> str:
    columns = f"({','.join(a.wire_name for a in selected)})" if selected else ""
    return f"{org.base_url}/api/data/v9.2/$metadata#{entity.set_name}{columns}"


def count_rows(org: DataverseOrg, entity: Entity) -> int:
    """``GET /<set>/$count``: the number of rows, capped at 5,000."""
    return min(org.store.count(entity), COUNT_CAP)


# --- change tracking --------------------------------------------------------------------------


def delta_token(org: DataverseOrg, version: int) -> str:
    """A delta token for ``version`` at the sandbox clock's time."""
    return f"{version}!{org.clock.now():%m/%d/%Y %H:%M:%S}"


def parse_delta_token(org: DataverseOrg, token: str) -> int:
    """The row version of a delta token; 400 ``0x80044352`` when it has expired."""
    try:
        version_text, stamp = token.split("!", 1)
        version = int(version_text)
        issued = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise query_error(f"The delta token '{token}' is not valid.") from None
    too_old = org.clock.now() - issued > timedelta(days=org.expire_change_tracking_days)
    if version < org.delta_floor or too_old:
        raise DataverseError(
            400,
            EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        )
    return version


def run_tracking(org: DataverseOrg, query: Query, path: str) -> dict[str, Any]:
    """The answer to a change-tracking read (first read or delta)."""
    entity = query.entity
    token = query.args.get("$deltatoken")
    since = parse_delta_token(org, token) if token is not None else None
    cookie, page_number = _cookie(query)
    snapshot = int(cookie["snapshot"]) if cookie else org.store.current_version()
    phase = cookie["phase"] if cookie else "rows"
    after = int(cookie["after"]) if cookie else (since or 0)
    limit = query.page_size
    items: list[dict[str, Any]] = []
    if phase == "rows":
        rows = org.store.query(
            f"SELECT * FROM {quote(entity.name)} WHERE versionnumber > ? AND versionnumber <= ? "
            "ORDER BY versionnumber LIMIT ?",
            [after, snapshot, limit + 1],
        )
        writer = RowWriter(org.store, entity, query.selected, query.annotations)
        items = writer.render(rows[:limit])
        if len(rows) > limit:
            state = {"snapshot": snapshot, "phase": "rows", "after": rows[limit - 1][
                "versionnumber"]}  # fmt: skip
            return _tracking_page(org, query, path, items, state, page_number)
        after = since or 0
    if since is not None:
        room = limit - len(items)
        dead = _tombstones(org, entity, after, snapshot, room + 1)
        items += [_tombstone_json(org, entity, record_id) for record_id, _ in dead[:room]]
        if len(dead) > room:
            last = dead[room - 1][1] if room else after
            state = {"snapshot": snapshot, "phase": "deleted", "after": last}
            return _tracking_page(org, query, path, items, state, page_number)
    return _tracking_page(org, query, path, items, None, page_number, snapshot)


def _tombstones(
    org: DataverseOrg, entity: Entity, after: int, snapshot: int, limit: int
) -> list[tuple[str, int]]:
    """Deleted ids (not alive again) with versions in ``(after, snapshot]``, oldest first."""
    rows = org.store.query(
        f"SELECT d.record_id, d.version FROM sandbox_deleted d LEFT JOIN {quote(entity.name)} "
        f"live ON live.{quote(entity.primary_id)} = d.record_id WHERE d.entity = ? AND "
        "d.version > ? AND d.version <= ? AND live.rowid IS NULL ORDER BY d.version LIMIT ?",
        [entity.name, after, snapshot, limit],
    )
    return [(str(row[0]), int(row[1])) for row in rows]


def _tombstone_json(org: DataverseOrg, entity: Entity, record_id: str) -> dict[str, Any]:
    context = f"{org.base_url}/api/data/v9.2/$metadata#{entity.set_name}/$deletedEntity"
    return {"@odata.context": context, "id": record_id, "reason": "deleted"}


def _tracking_page(
    org: DataverseOrg,
    query: Query,
    path: str,
    items: list[dict[str, Any]],
    next_state: dict[str, Any] | None,
    page_number: int,
    snapshot: int | None = None,
) -> dict[str, Any]:
    entity = query.entity
    delta = "/$delta" if "$deltatoken" in query.args else ""
    body: dict[str, Any] = {"@odata.context": _context(org, entity, query.selected) + delta}
    body["value"] = items
    base = {k: v for k, v in query.args.items() if k in ("$select", "$deltatoken")}
    if next_state is not None:
        params = {**base, "$skiptoken": encode_cookie(next_state, page_number + 1, True)}
        body["@odata.nextLink"] = _link(org, path, params)
    else:
        assert snapshot is not None
        params = {k: v for k, v in base.items() if k == "$select"}
        params["$deltatoken"] = delta_token(org, snapshot)
        body["@odata.deltaLink"] = _link(org, path, params)
    return body
