"""Sending one SOQL query to Salesforce: in the URL when it fits, in a Composite body when not.

Salesforce refuses a request whose URI is over 16,384 bytes (414 URI Too Long), or whose URI
and headers together are (431 Request Header Fields Too Large); a REST query carries its whole
statement in the URI (``GET .../query/?q=``), so the SELECT of every field of a wide object,
or a long ``Id IN (...)`` list, does not fit. Such a query goes as the one GET subrequest of a
Composite request (``POST .../composite``): its URL travels in the JSON body, where only the
statement limit of SOQL applies (100,000 characters), and the call still counts as one API
request. Its answer is the query's own answer, paged by ``nextRecordsUrl`` as usual.

The URL is measured as ``requests`` will encode it, against the limit less an allowance for
the request line and headers; if Salesforce still answers 414 or 431, the query is sent the
Composite way instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from adapters._kit.url_budget import prepared_url, url_bytes

URI_LIMIT = 16_384
"""Salesforce's limit on a request's URI, and on its URI and headers together, in bytes."""
HEAD_ALLOWANCE = 2_048
"""Bytes kept for the request line and the headers (a session id, the query options)."""
DIRECT_URL_BUDGET = URI_LIMIT - HEAD_ALLOWANCE
SOQL_LIMIT = 100_000
"""Salesforce's limit on one SOQL statement, in characters."""
TOO_LONG_STATUSES = frozenset({414, 431})

_EXCEPTIONS: Mapping[int, type[SalesforceError]] = {
    300: SalesforceMoreThanOneRecord,
    400: SalesforceMalformedRequest,
    401: SalesforceExpiredSession,
    403: SalesforceRefusedRequest,
    404: SalesforceResourceNotFound,
}


def query_url(sf: Salesforce, soql: str, include_deleted: bool) -> str:
    """The URL simple-salesforce sends ``soql`` to, query string included."""
    resource = "queryAll/" if include_deleted else "query/"
    return prepared_url(f"{sf.base_url}{resource}", {"q": soql})


def fits_in_url(sf: Salesforce, soql: str, include_deleted: bool) -> bool:
    """Whether ``soql`` can go in a GET's URL with room left for the headers."""
    return url_bytes(query_url(sf, soql, include_deleted)) <= DIRECT_URL_BUDGET


def send_query(
    sf: Salesforce, soql: str, include_deleted: bool, headers: Mapping[str, str]
) -> dict[str, Any]:
    """The first answer of ``soql`` (``queryAll`` with ``include_deleted``), sent in the URL
    when it fits, else (or when Salesforce refuses the URL as too long) through Composite."""
    if fits_in_url(sf, soql, include_deleted):
        try:
            answer: dict[str, Any] = sf.query(
                soql, include_deleted=include_deleted, headers=dict(headers)
            )
            return answer
        except SalesforceError as error:
            if error.status not in TOO_LONG_STATUSES:
                raise
    return composite_query(sf, soql, include_deleted, headers)


def composite_query(
    sf: Salesforce, soql: str, include_deleted: bool, headers: Mapping[str, str]
) -> dict[str, Any]:
    """``soql`` as the one GET subrequest of ``POST .../composite``; its answer, or the
    simple-salesforce exception its error status maps to (as a direct query would raise)."""
    resource = "queryAll" if include_deleted else "query"
    url = f"/services/data/v{sf.sf_version}/{resource}/?{urlencode({'q': soql})}"
    subrequest = {"method": "GET", "url": url, "referenceId": "query", "httpHeaders": dict(headers)}
    answer = sf.restful(
        "composite", method="POST", json={"allOrNone": False, "compositeRequest": [subrequest]}
    )
    entries = (answer or {}).get("compositeResponse") or []
    if len(entries) != 1:
        raise SalesforceGeneralError(
            f"{sf.base_url}composite",
            500,
            "query",
            "the Composite answer holds no query answer",  # type: ignore[arg-type]
        )
    status = int(entries[0].get("httpStatusCode") or 500)
    body = entries[0].get("body")
    if status >= 300 or not isinstance(body, dict):
        error_class = _EXCEPTIONS.get(status, SalesforceGeneralError)
        raise error_class(f"{sf.base_url}{resource}/", status, "query", body)
    return body
