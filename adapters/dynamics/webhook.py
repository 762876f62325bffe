"""Dataverse webhooks: checking a delivery's key and reading the changes its
``RemoteExecutionContext`` tells of; registering the endpoint and its steps.

A delivery is verified by the key the service endpoint was registered with (``webhook_key``,
sent as ``?code=`` for WebhookKey, as a header for HttpHeader, as a query parameter for
HttpQueryString), compared in constant time; a missing or wrong key raises
``StreamSignatureError``. The body is the execution context of one message on one row:

- ``Create``, ``Update`` (and ``Assign``, ``SetState``, ``SetStateDynamicEntity``): the row
  ``PrimaryEntityId`` changed; an Update's ``Target`` names the columns it set.
- ``Delete``: the row was deleted.
- ``Merge``: ``PrimaryEntityId`` is the survivor and ``InputParameters.SubordinateId`` the
  merged row; both changed (Dataverse deactivates the merged row, it does not delete it, and
  the mirror keeps it as the poll reads it: live and inactive).

``OperationCreatedOn`` (``/Date(<ms>)/``) is when the change was made. A body that cannot be
read, or a message the adapter does not know, is a ``StreamGap`` of the object (the engine
polls it). Dataverse has no replay: a delivery lost for good (an asynchronous system job that
failed all its attempts, a synchronous step whose write was rolled back is no change) is covered
only by the poll backstop.

``register_webhook`` creates (or updates) the ``serviceendpoint`` row named ``name`` and one
asynchronous PostOperation ``sdkmessageprocessingstep`` per message of each table, through the
Web API with the adapter's own connection (msal + requests).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import quoteattr

import orjson

from adapters._kit.settings import reveal
from adapters.dynamics.client import DataverseConnection
from adapters.dynamics.settings import DynamicsSettings
from mirror.errors import StreamSignatureError
from mirror.types import StreamEvent, StreamGap

StreamItem = StreamEvent | StreamGap
CHANGING_MESSAGES = ("Create", "Update", "Assign", "SetState", "SetStateDynamicEntity")
DEFAULT_MESSAGES = ("Create", "Update", "Delete", "Merge")
MERGE_TABLES = ("account", "contact", "lead", "incident")
AUTH_CODES = {"WebhookKey": 4, "HttpHeader": 5, "HttpQueryString": 6}
_WCF_DATE = re.compile(r"^/Date\((?P<ms>-?\d+)(?:[+-]\d{4})?\)/$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_STAMPS = {"modifiedon", "modifiedby", "modifiedonbehalfby", "versionnumber"}


def verify(settings: DynamicsSettings, url: str, headers: Mapping[str, str]) -> None:
    """Raise ``StreamSignatureError`` unless the delivery carries ``webhook_key``."""
    expected = reveal(settings.webhook_key)
    if not expected:
        raise StreamSignatureError(
            "a Dataverse webhook delivery arrived but dynamics.webhook_key is not set"
        )
    if settings.webhook_auth == "HttpHeader":
        wanted = settings.webhook_key_name.lower()
        supplied = [v for k, v in headers.items() if k.lower() == wanted]
        where = f"header {settings.webhook_key_name}"
    else:
        name = "code" if settings.webhook_auth == "WebhookKey" else settings.webhook_key_name
        supplied = parse_qs(urlsplit(url).query, keep_blank_values=True).get(name, [])
        where = f"query parameter {name}"
    if len(supplied) != 1:
        raise StreamSignatureError(f"a Dataverse webhook delivery without its key ({where})")
    if not hmac.compare_digest(supplied[0].encode(), expected.encode()):
        raise StreamSignatureError(f"a Dataverse webhook delivery with a wrong key ({where})")


def parse_delivery(
    body: bytes, headers: Mapping[str, str], mirrored: Callable[[str], bool]
) -> list[StreamItem]:
    """The changes one verified delivery tells of (module docstring); rows of tables for
    which ``mirrored(logical name)`` is false are left out."""
    try:
        context = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return [StreamGap(None, f"a Dataverse webhook body that is not JSON ({error})")]
    if not isinstance(context, dict):
        return [StreamGap(None, "a Dataverse webhook body that is not an execution context")]
    table = context.get("PrimaryEntityName")
    if not isinstance(table, str) or not table:
        return [StreamGap(None, "a Dataverse execution context without PrimaryEntityName")]
    if not mirrored(table):
        return []
    message = context.get("MessageName")
    primary = _guid(context.get("PrimaryEntityId"))
    if primary is None:
        return [StreamGap(table, f"a Dataverse {message} context without a PrimaryEntityId")]
    committed = _when(context.get("OperationCreatedOn"))
    inputs = _pairs(context.get("InputParameters"))
    if message in CHANGING_MESSAGES:
        fields = _target_fields(inputs.get("Target")) if message == "Update" else ()
        return [StreamEvent(table, changed=(primary,), committed_at=committed,
                            changed_fields=fields)]  # fmt: skip
    if message == "Delete":
        return [StreamEvent(table, deleted=(primary,), committed_at=committed)]
    if message == "Merge":
        subordinate = _guid(inputs.get("SubordinateId"))
        if subordinate is None:
            stripped = any(k.lower() == "x-ms-dynamics-msg-size-exceeded" for k in headers)
            reason = "its context was cut (over 256 KB)" if stripped else "no SubordinateId"
            return [
                StreamEvent(table, changed=(primary,), committed_at=committed),
                StreamGap(table, f"a Dataverse Merge into {primary} with {reason}"),
            ]
        # Dataverse deactivates the merged row rather than deleting it, and the poll reads it
        # back as a live, inactive row: told as deleted here, stream and poll would flip it
        return [StreamEvent(table, changed=(primary, subordinate), committed_at=committed)]
    return [StreamGap(table, f"a Dataverse webhook for message {message!r}, which the "
                             "mirror does not read")]  # fmt: skip


def _guid(value: Any) -> str | None:
    if isinstance(value, str) and _GUID.match(value.strip("{}")):
        return value.strip("{}").lower()
    return None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    match = _WCF_DATE.match(value)
    if match:
        return datetime.fromtimestamp(int(match["ms"]) / 1000, UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _pairs(value: Any) -> dict[str, Any]:
    """A DataContract ``[{"key", "value"}]`` list as a dict (also taken as a plain dict)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        return {}
    return {p["key"]: p.get("value") for p in value if isinstance(p, dict) and "key" in p}


def _target_fields(target: Any) -> tuple[str, ...]:
    if not isinstance(target, dict):
        return ()
    names = _pairs(target.get("Attributes"))
    primary = f"{target.get('LogicalName')}id"
    return tuple(sorted(n for n in names if n != primary and n not in _STAMPS))


# --- registration ----------------------------------------------------------------------------


def register_webhook(
    conn: DataverseConnection,
    url: str,
    tables: Iterable[str],
    *,
    name: str = "prm-mirror",
    messages: Iterable[str] = DEFAULT_MESSAGES,
) -> dict[str, Any]:
    """Create or update the webhook endpoint ``name`` posting to ``url`` with the configured
    key, and the asynchronous PostOperation steps of ``messages`` on ``tables`` it lacks
    (``Merge`` only where Dataverse merges). Returns ``{"serviceendpointid", "steps"}``
    (the ids of the steps created now)."""
    settings = conn.settings
    key = reveal(settings.webhook_key)
    if not key:
        raise ValueError("dynamics.webhook_key must be set to register a webhook")
    auth = settings.webhook_auth
    value = key if auth == "WebhookKey" else (
        f"<settings><setting name={quoteattr(settings.webhook_key_name)} "
        f"value={quoteattr(key)} /></settings>"
    )  # fmt: skip
    endpoint = {"name": name, "contract": 8, "url": url, "authtype": AUTH_CODES[auth],
                "authvalue": value, "messageformat": 2}  # fmt: skip
    quoted = name.replace("'", "''")
    found = conn.get_json(
        f"serviceendpoints?$select=serviceendpointid&$filter=name eq '{quoted}' and contract eq 8",
        action="finding the webhook",
    )
    if found.get("value"):
        endpoint_id = str(found["value"][0]["serviceendpointid"])
        changes = {k: endpoint[k] for k in ("url", "authtype", "authvalue")}
        conn.request("PATCH", f"serviceendpoints({endpoint_id})", json=changes,
                     action="updating the webhook")  # fmt: skip
    else:
        response = conn.request("POST", "serviceendpoints", json=endpoint,
                                action="registering the webhook", idempotent=False)  # fmt: skip
        endpoint_id = _created_id(response.headers.get("OData-EntityId", ""))
    existing = conn.get_json(
        f"sdkmessageprocessingsteps?$select=_sdkmessagefilterid_value&$filter="
        f"_eventhandler_value eq {endpoint_id}",
        action="listing the webhook's steps",
    )
    have = {row.get("_sdkmessagefilterid_value") for row in existing.get("value") or ()}
    created = []
    for message in messages:
        message_id = _message_id(conn, message)
        for table in tables:
            if message == "Merge" and table not in MERGE_TABLES:
                continue
            filter_id = _filter_id(conn, message_id, table)
            if filter_id in have:
                continue
            step = {
                "name": f"{name}: {message} of {table}",
                "stage": 40,
                "mode": 1,
                "rank": 1,
                "supporteddeployment": 0,
                "asyncautodelete": True,
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            }
            response = conn.request("POST", "sdkmessageprocessingsteps", json=step,
                                    action=f"registering the {message} step of {table}",
                                    idempotent=False)  # fmt: skip
            created.append(_created_id(response.headers.get("OData-EntityId", "")))
    return {"serviceendpointid": endpoint_id, "steps": created}


def _message_id(conn: DataverseConnection, message: str) -> str:
    body = conn.get_json(f"sdkmessages?$select=sdkmessageid&$filter=name eq '{message}'",
                         action=f"finding the {message} message")  # fmt: skip
    rows = body.get("value") or []
    if not rows:
        raise ValueError(f"Dataverse has no message named {message!r}")
    return str(rows[0]["sdkmessageid"])


def _filter_id(conn: DataverseConnection, message_id: str, table: str) -> str:
    body = conn.get_json(
        f"sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq "
        f"'{table}' and _sdkmessageid_value eq {message_id}",
        action=f"finding the message filter of {table}",
    )
    rows = body.get("value") or []
    if not rows:
        raise ValueError(f"Dataverse raises no such message on table {table!r}")
    return str(rows[0]["sdkmessagefilterid"])


def _created_id(entity_id: str) -> str:
    match = re.search(r"\(([^)]+)\)\s*$", entity_id)
    if match is None:
        raise ValueError(f"Dataverse answered a create without OData-EntityId: {entity_id!r}")
    return match.group(1)
