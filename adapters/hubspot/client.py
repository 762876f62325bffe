"""The adapter's connection to one HubSpot portal, on hubspot-api-client.

``HubSpotConnection`` builds the SDK client once, with every API object sharing one
``GovernedPoolManager`` (request counting, rate pacing, 429 waits: ``hubspot_http``). Calls go
through ``call``, which asks the SDK for the raw answer (``_preload_content=False``) and parses
it with orjson: the SDK keeps paths, auth, parameter encoding and its exceptions, while records
stay the plain strings HubSpot sent, with no model objects in between. Server errors and lost
connections are retried with backoff when the request may be repeated; everything else is
mapped through the one table in ``hubspot_errors``. A list page whose properties would make its
URL too long is read as an id list plus a ``batch/read`` (``list_page``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import orjson
import urllib3
from hubspot import HubSpot

from adapters._kit.http_retry import parse_http_date
from adapters._kit.settings import reveal
from adapters._kit.url_budget import prepared_url, url_bytes
from adapters.hubspot.errors import ErrorAnswer, Outcome, OutcomeUnknown, mirror_error, outcome
from adapters.hubspot.http import GovernedPoolManager, RateGovernor
from adapters.hubspot.settings import HubSpotSettings
from mirror.cursor import AnswerTime
from mirror.errors import ConfigError, CrmError, TransientError

CONNECTION_ERRORS: tuple[type[Exception], ...] = (urllib3.exceptions.HTTPError, OSError)
ID_PROPERTY = "hs_object_id"
DIRECT_URL_BUDGET = 12_288
"""The longest GET URL the adapter sends HubSpot. HubSpot documents no URL limit; integrators
see 414 URI Too Long from about 16 KB, so the adapter keeps a quarter of that free (and falls
back on a 414 all the same)."""
URI_TOO_LONG = 414


@dataclass(frozen=True)
class Reply:
    """One successful answer: its status, parsed JSON body (``None`` when empty) and when the
    portal answered (its ``Date`` and the local time the request took; ``None``: no date)."""

    status: int
    body: Any
    answered: AnswerTime | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """A key of the body (``default`` when the body is not an object)."""
        return self.body.get(key, default) if isinstance(self.body, dict) else default


class HubSpotConnection:
    """One portal's SDK client, governed and counted, with retries and error mapping."""

    def __init__(
        self, settings: HubSpotSettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Prepare (without any request) the client for ``settings``; ``ConfigError`` lists
        every settings problem."""
        problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.sleep = sleep
        self.governor = RateGovernor(
            settings.search_per_second, settings.burst_reserve, sleep=sleep
        )
        self.pool = GovernedPoolManager(
            self.governor,
            max_waits=settings.max_rate_limit_waits,
            num_pools=2,
            maxsize=4,
            timeout=urllib3.Timeout(total=settings.timeout),
        )
        self._apis: dict[tuple[str, str], Any] = {}
        self.client = HubSpot(
            access_token=reveal(settings.access_token),
            host=settings.base_url,
            api_factory=self._api_factory,
        )

    def _api_factory(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        key = (package.__name__, api_name)
        if key not in self._apis:
            configuration = package.Configuration()
            for name, value in config.items():
                setattr(configuration, name, value)
            api_client = package.ApiClient(configuration=configuration)
            api_client.rest_client.pool_manager = self.pool
            api_client.user_agent = "prm-mirror (hubspot-api-client-python)"
            self._apis[key] = getattr(package, api_name)(api_client=api_client)
        return self._apis[key]

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far."""
        return self.pool.count

    def call(
        self, action: str, send: Callable[[HubSpot], Any], *, idempotent: bool = True
    ) -> Reply:
        """Run one SDK call (which must pass ``_preload_content=False``) and parse its answer.

        Server errors are retried with backoff; a lost connection is retried only when the
        request is ``idempotent``, else ``OutcomeUnknown`` says it may have been applied.
        """
        policy = self.settings.retry_policy
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                raw = send(self.client)
            except CONNECTION_ERRORS as error:
                if not idempotent:
                    raise OutcomeUnknown(
                        f"the connection to HubSpot dropped while {action} ({type(error).__name__})"
                    ) from None
                if policy.gives_up(attempt):
                    raise TransientError(
                        f"HubSpot could not be reached while {action} ({type(error).__name__})"
                    ) from None
                cause = type(error).__name__
            except Exception as error:
                if not hasattr(error, "status"):
                    raise
                answer = ErrorAnswer.from_exception(error)
                kind = outcome(answer)
                if kind is not Outcome.RETRY or policy.gives_up(attempt):
                    raise mirror_error(answer, action) from None
                cause = f"HTTP {answer.status}"
            else:
                return _reply(raw, timedelta(seconds=time.monotonic() - sent))
            policy.pause(self.sleep, attempt, what=f"HubSpot failed while {action}", cause=cause)
            attempt += 1

    # -- the calls the adapter makes ---------------------------------------------------------

    def list_page(
        self,
        object_type: str,
        properties: Sequence[str],
        after: str | None,
        limit: int,
        archived: bool = False,
    ) -> Reply:
        """``GET /crm/v3/objects/{type}``: one page of records in id order.

        The properties go in the URL, repeated; when they would make it longer than
        ``DIRECT_URL_BUDGET`` (or HubSpot answers 414 all the same), the page is listed with the
        id property alone and its records are read with every property through ``batch/read``
        (properties in the body), which keeps the list order and its paging; a record gone
        between the two is left out."""
        fits = self.list_url_bytes(object_type, properties, after, limit) <= DIRECT_URL_BUDGET
        if not properties or fits:
            try:
                return self._list_page(object_type, properties, after, limit, archived)
            except CrmError as error:
                if error.status != URI_TOO_LONG or not properties:
                    raise
        listed = self._list_page(object_type, [ID_PROPERTY], after, limit, archived)
        ids = [str(obj["id"]) for obj in listed.get("results") or ()]
        if not ids:
            return listed
        body = {"properties": list(properties), "inputs": [{"id": i} for i in ids]}
        read = self.batch(object_type, "read", body, archived=archived)
        by_id = {str(obj.get("id")): obj for obj in read.get("results") or ()}
        results = [by_id[i] for i in ids if i in by_id]
        # the list's own answer (its status, when it was answered) stands for the page
        return replace(listed, body={**listed.body, "results": results})

    def list_url_bytes(
        self, object_type: str, properties: Sequence[str], after: str | None, limit: int
    ) -> int:
        """The length of the list request's URL, encoded as the SDK sends it."""
        params: list[tuple[str, Any]] = [("limit", limit), ("archived", "false")]
        params += [("properties", name) for name in properties]
        if after:
            params.append(("after", after))
        url = f"{self.settings.base_url.rstrip('/')}/crm/v3/objects/{object_type}"
        return url_bytes(prepared_url(url, params))

    def _list_page(
        self,
        object_type: str,
        properties: Sequence[str],
        after: str | None,
        limit: int,
        archived: bool,
    ) -> Reply:
        kwargs: dict[str, Any] = {"limit": limit, "archived": archived, "_preload_content": False}
        if properties:
            kwargs["properties"] = list(properties)
        if after:
            kwargs["after"] = after
        return self.call(
            f"listing {object_type}",
            lambda api: api.crm.objects.basic_api.get_page(object_type, **kwargs),
        )

    def search(self, object_type: str, body: dict[str, Any]) -> Reply:
        """``POST /crm/v3/objects/{type}/search``."""
        return self.call(
            f"searching {object_type}",
            lambda api: api.crm.objects.search_api.do_search(
                object_type, body, _preload_content=False
            ),
        )

    def batch(self, object_type: str, verb: str, body: dict[str, Any], **kwargs: Any) -> Reply:
        """``POST /crm/v3/objects/{type}/batch/{verb}`` (read, create, update, upsert,
        archive); create, update and upsert are not repeated after a lost answer (sent
        again, an update or upsert could revert a change made since the first one landed)."""
        return self.call(
            f"{verb} of {object_type} records",
            lambda api: getattr(api.crm.objects.batch_api, verb)(
                object_type, body, _preload_content=False, **kwargs
            ),
            idempotent=verb not in ("create", "update", "upsert"),
        )

    def associations(self, from_type: str, to_type: str, verb: str, body: dict[str, Any]) -> Reply:
        """``POST /crm/v4/associations/{from}/{to}/batch/{verb}`` (``get_page`` reads)."""
        return self.call(
            f"{verb} of {from_type}-{to_type} associations",
            lambda api: getattr(api.crm.associations.v4.batch_api, verb)(
                from_type, to_type, body, _preload_content=False
            ),
        )

    def association_labels(self, from_type: str, to_type: str) -> Reply:
        """``GET /crm/v4/associations/{from}/{to}/labels``."""
        return self.call(
            f"listing {from_type}-{to_type} association labels",
            lambda api: api.crm.associations.v4.schema.definitions_api.get_all(
                from_type, to_type, _preload_content=False
            ),
        )

    def properties(self, object_type: str) -> Reply:
        """``GET /crm/v3/properties/{type}``."""
        return self.call(
            f"describing {object_type}",
            lambda api: api.crm.properties.core_api.get_all(
                object_type, archived=False, _preload_content=False
            ),
        )

    def schemas(self) -> Reply:
        """``GET /crm-object-schemas/v3/schemas``: the custom object types."""
        return self.call(
            "listing custom objects",
            lambda api: api.crm.schemas.core_api.get_all(archived=False, _preload_content=False),
        )


def _reply(raw: Any, elapsed: timedelta) -> Reply:
    data = getattr(raw, "data", None) or b""
    body = orjson.loads(data) if data.strip() else None
    headers = getattr(raw, "headers", None) or {}
    date = parse_http_date(headers.get("Date"))
    answered = AnswerTime(date, elapsed) if date is not None else None
    return Reply(int(getattr(raw, "status", 200)), body, answered)
