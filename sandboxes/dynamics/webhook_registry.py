"""Webhook registrations of the Dataverse sandbox: ``serviceendpoint`` rows (contract 8,
Webhook) and the ``sdkmessageprocessingstep`` rows that bind them to a message of a table.

What Dataverse keeps in its ``serviceendpoint``, ``sdkmessageprocessingstep``, ``sdkmessage``
and ``sdkmessagefilter`` tables, the sandbox keeps in one meta value of its SQLite file (so
registrations survive a restart). ``sdkmessage`` rows exist for the messages the sandbox raises
(``Create``, ``Update``, ``Delete``, ``Merge``) with fixed ids, and ``sdkmessagefilter`` rows
for each of those messages on each table that supports it (``Merge`` on account, contact, lead
and incident). Only webhook endpoints (contract 8) with authentication types 4 (WebhookKey,
``?code=``), 5 (HttpHeader) and 6 (HttpQueryString) are accepted; the others, plug-in type
handlers and step images are refused with an error that says the sandbox does not implement
them.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.schema import DataverseSchema
from sandboxes.dynamics.store import DataverseStore

WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_QUERY_STRING = 4, 5, 6
AUTH_TYPES = {AUTH_WEBHOOK_KEY: "WebhookKey", AUTH_HTTP_HEADER: "HttpHeader",
              AUTH_QUERY_STRING: "HttpQueryString"}  # fmt: skip
STAGES = {10: "PreValidation", 20: "PreOperation", 40: "PostOperation"}
MODE_SYNC, MODE_ASYNC = 0, 1
MESSAGES = ("Create", "Update", "Delete", "Merge")
MERGE_TABLES = ("account", "contact", "lead", "incident")
_NAMESPACE = uuid.UUID("5b6f3a3e-2d4c-4f7b-9c1e-7a0d8e6f4b21")
_META_KEY = "webhooks"
UNSUPPORTED = "0x80040203"


def message_id(name: str) -> str:
    """The fixed ``sdkmessageid`` of a message."""
    return str(uuid.uuid5(_NAMESPACE, f"sdkmessage:{name}"))


def filter_id(message: str, table: str) -> str:
    """The fixed ``sdkmessagefilterid`` of a message on a table."""
    return str(uuid.uuid5(_NAMESPACE, f"sdkmessagefilter:{message}:{table}"))


def not_implemented(what: str) -> DataverseError:
    """The sandbox's refusal of a registration it does not emulate (Dataverse would take it)."""
    return DataverseError(501, UNSUPPORTED, f"The Dataverse sandbox does not implement {what}.")


def missing(table: str, row_id: Any) -> DataverseError:
    """Dataverse's 404 for a row that does not exist."""
    return DataverseError(404, "0x80040217", f"{table} With Id = {row_id} Does Not Exist")


def invalid(message: str) -> DataverseError:
    """A 400 for a registration Dataverse refuses."""
    return DataverseError(400, "0x80040203", message)


@dataclass(frozen=True)
class Step:
    """A registered step as the event pipeline uses it."""

    step_id: str
    name: str
    message: str
    table: str | None
    stage: int
    mode: int
    rank: int
    filtering: tuple[str, ...]
    endpoint_id: str
    enabled: bool


class WebhookRegistry:
    """The registrations of one sandbox organisation (module docstring)."""

    def __init__(self, store: DataverseStore) -> None:
        """Registrations kept in ``store``'s meta table."""
        self.store = store
        self._lock = threading.Lock()
        saved = orjson.loads(store.get_meta(_META_KEY) or "{}")
        self.endpoints: dict[str, dict[str, Any]] = saved.get("endpoints", {})
        self.steps: dict[str, dict[str, Any]] = saved.get("steps", {})

    @property
    def schema(self) -> DataverseSchema:
        """The organisation's tables."""
        return self.store.schema

    def _save(self) -> None:
        body = {"endpoints": self.endpoints, "steps": self.steps}
        self.store.set_meta(_META_KEY, orjson.dumps(body).decode())

    # --- the catalogue --------------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """The ``sdkmessage`` rows."""
        return [{"sdkmessageid": message_id(name), "name": name} for name in MESSAGES]

    def filters(self) -> list[dict[str, Any]]:
        """The ``sdkmessagefilter`` rows (``primaryobjecttypecode`` is the logical name)."""
        found = []
        for name in MESSAGES:
            for table in sorted(self.schema.entities):
                if name == "Merge" and table not in MERGE_TABLES:
                    continue
                found.append({"sdkmessagefilterid": filter_id(name, table),
                              "primaryobjecttypecode": table, "secondaryobjecttypecode": "none",
                              "_sdkmessageid_value": message_id(name),
                              "iscustomprocessingstepallowed": True})  # fmt: skip
        return found

    # --- service endpoints ----------------------------------------------------------------

    def add_endpoint(self, values: Mapping[str, Any]) -> str:
        """Register a webhook endpoint from ``serviceendpoint`` column values; its id."""
        if values.get("contract") != WEBHOOK_CONTRACT:
            raise not_implemented(
                f"service endpoints of contract {values.get('contract')!r} (only 8, Webhook)"
            )
        if not values.get("name"):
            raise invalid("Name is required for a service endpoint.")
        check_url(values.get("url"))
        auth_type = values.get("authtype")
        if auth_type not in AUTH_TYPES:
            raise invalid(
                "A webhook needs authtype 4 (WebhookKey), 5 (HttpHeader) or 6 "
                f"(HttpQueryString); got {auth_type!r}."
            )
        auth_pairs(auth_type, values.get("authvalue"))
        endpoint_id = str(values.get("serviceendpointid") or uuid.uuid4()).lower()
        with self._lock:
            if endpoint_id in self.endpoints:
                raise invalid(f"A service endpoint with id {endpoint_id} already exists.")
            self.endpoints[endpoint_id] = {
                "serviceendpointid": endpoint_id, "name": values["name"],
                "contract": WEBHOOK_CONTRACT, "url": values["url"], "authtype": auth_type,
                "authvalue": values["authvalue"], "messageformat": values.get("messageformat", 2),
                "description": values.get("description"),
            }  # fmt: skip
            self._save()
        return endpoint_id

    def update_endpoint(self, endpoint_id: str, values: Mapping[str, Any]) -> None:
        """Change the url, name, description or authentication of an endpoint."""
        with self._lock:
            current = self._endpoint(endpoint_id)
            merged = {**current, **values}
            check_url(merged.get("url"))
            if merged.get("authtype") not in AUTH_TYPES:
                raise invalid("A webhook needs authtype 4, 5 or 6.")
            auth_pairs(merged["authtype"], merged.get("authvalue"))
            self.endpoints[current["serviceendpointid"]] = merged
            self._save()

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Remove an endpoint; refused while steps still use it, as Dataverse refuses it."""
        with self._lock:
            current = self._endpoint(endpoint_id)
            if any(s["eventhandler"] == current["serviceendpointid"] for s in self.steps.values()):
                raise invalid(
                    "The service endpoint cannot be deleted because it is referenced by "
                    "sdkmessageprocessingstep records. Delete the steps first."
                )
            del self.endpoints[current["serviceendpointid"]]
            self._save()

    def _endpoint(self, endpoint_id: str) -> dict[str, Any]:
        found = self.endpoints.get(str(endpoint_id).lower())
        if found is None:
            raise missing("serviceendpoint", endpoint_id)
        return found

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """An endpoint's stored columns (``authvalue`` included: for the sender only)."""
        with self._lock:
            return dict(self._endpoint(endpoint_id))

    # --- steps ----------------------------------------------------------------------------

    def add_step(self, values: Mapping[str, Any]) -> str:
        """Register a step from resolved ``sdkmessageprocessingstep`` values; its id."""
        message = {m["sdkmessageid"]: m["name"] for m in self.messages()}.get(
            str(values.get("sdkmessageid") or "").lower()
        )
        if message is None:
            raise invalid("sdkmessageid must name one of the organisation's sdkmessage rows.")
        table = self._filter_table(values.get("sdkmessagefilterid"), message)
        stage, mode = values.get("stage"), values.get("mode", MODE_SYNC)
        if stage not in STAGES:
            raise invalid(f"Invalid stage {stage!r}: use 10, 20 or 40.")
        if mode not in (MODE_SYNC, MODE_ASYNC):
            raise invalid(f"Invalid mode {mode!r}: use 0 (Synchronous) or 1 (Asynchronous).")
        if mode == MODE_ASYNC and stage != 40:
            raise invalid("Asynchronous steps can be registered only in the PostOperation "
                          "stage (40).")  # fmt: skip
        if stage != 40:
            raise not_implemented(f"webhook steps in stage {stage} (only 40, PostOperation)")
        endpoint_id = str(values.get("eventhandler") or "").lower()
        with self._lock:
            self._endpoint(endpoint_id)
            step_id = str(values.get("sdkmessageprocessingstepid") or uuid.uuid4()).lower()
            filtering = values.get("filteringattributes") or ""
            self.steps[step_id] = {
                "sdkmessageprocessingstepid": step_id,
                "name": values.get("name") or f"{message} of {table or 'any table'}",
                "message": message, "table": table, "stage": stage, "mode": mode,
                "rank": int(values.get("rank") or 1), "filteringattributes": filtering,
                "eventhandler": endpoint_id, "statecode": int(values.get("statecode") or 0),
                "asyncautodelete": bool(values.get("asyncautodelete") or False),
                "description": values.get("description"),
            }  # fmt: skip
            self._save()
        return step_id

    def _filter_table(self, value: Any, message: str) -> str | None:
        if value is None:
            return None
        for row in self.filters():
            if row["sdkmessagefilterid"] == str(value).lower():
                if row["_sdkmessageid_value"] != message_id(message):
                    raise invalid("The sdkmessagefilter does not belong to the step's message.")
                return str(row["primaryobjecttypecode"])
        raise missing("sdkmessagefilter", value)

    def update_step(self, step_id: str, values: Mapping[str, Any]) -> None:
        """Enable or disable a step (``statecode`` 0/1) or change its name or filtering
        attributes; other changes are refused (delete and register the step again)."""
        allowed = {"statecode", "statuscode", "name", "description", "filteringattributes"}
        extra = sorted(set(values) - allowed)
        if extra:
            raise not_implemented(f"updating {', '.join(extra)} of a step (register it again)")
        with self._lock:
            step = self._step(step_id)
            step.update({k: v for k, v in values.items() if k != "statuscode"})
            self._save()

    def delete_step(self, step_id: str) -> None:
        """Remove a step."""
        with self._lock:
            del self.steps[self._step(step_id)["sdkmessageprocessingstepid"]]
            self._save()

    def _step(self, step_id: str) -> dict[str, Any]:
        found = self.steps.get(str(step_id).lower())
        if found is None:
            raise missing("sdkmessageprocessingstep", step_id)
        return found

    def clear(self) -> None:
        """Remove every step and endpoint."""
        with self._lock:
            self.steps.clear()
            self.endpoints.clear()
            self._save()

    def active_steps(self, message: str, table: str) -> list[Step]:
        """The enabled steps of ``message`` on ``table``, in rank order."""
        with self._lock:
            rows = [dict(s) for s in self.steps.values()]
        found = [
            Step(
                row["sdkmessageprocessingstepid"],
                row["name"],
                row["message"],
                row["table"],
                row["stage"],
                row["mode"],
                row["rank"],
                tuple(a.strip() for a in row["filteringattributes"].split(",") if a.strip()),
                row["eventhandler"],
                row["statecode"] == 0,
            )
            for row in rows
            if row["message"] == message and row["table"] in (None, table)
        ]
        return sorted((s for s in found if s.enabled), key=lambda s: s.rank)


def check_url(url: Any) -> None:
    """Refuse an endpoint URL that is not absolute http(s)."""
    parts = urlsplit(str(url or ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"The webhook url must be an absolute http or https URL; got {url!r}.")


def auth_pairs(auth_type: int, value: Any) -> list[tuple[str, str]]:
    """The key/value pairs an endpoint's ``authvalue`` sends: ``[("code", value)]`` for
    WebhookKey; for HttpHeader and HttpQueryString the ``<settings><setting name=".."
    value=".." /></settings>`` document the Plug-in Registration Tool writes."""
    if not isinstance(value, str) or not value:
        raise invalid("authvalue is required for a webhook.")
    if auth_type == AUTH_WEBHOOK_KEY:
        return [("code", value)]
    try:
        root = ElementTree.fromstring(value)
    except ElementTree.ParseError:
        raise invalid(
            'authvalue must be <settings><setting name="..." value="..." /></settings> for '
            "HttpHeader and HttpQueryString."
        ) from None
    pairs = [(s.get("name") or "", s.get("value") or "") for s in root.iter("setting")]
    if root.tag != "settings" or not pairs or not all(name for name, _ in pairs):
        raise invalid("authvalue must hold at least one <setting name=... value=... />.")
    return pairs


def settings_xml(pairs: Mapping[str, str]) -> str:
    """The ``authvalue`` document for HttpHeader / HttpQueryString pairs."""
    root = ElementTree.Element("settings")
    for name, value in pairs.items():
        ElementTree.SubElement(root, "setting", name=name, value=value)
    return ElementTree.tostring(root, encoding="unicode")
