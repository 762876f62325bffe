"""A resilient connection to one Salesforce org, on simple-salesforce.

``SalesforceConnection`` owns the login (SOAP or OAuth through simple-salesforce's
``SalesforceLogin``), the ``requests.Session`` every call goes through, and ``call``: run one
request with a simple-salesforce client, renewing an expired session (also in the middle of a
paged read or a Bulk download, which simple-salesforce alone does not do for Bulk API 2.0),
retrying outages, locks and dropped connections with backoff and jitter, and turning whatever
is left into the engine's ``MirrorError`` tree through ``salesforce_errors``. Queries go in the
URL when they fit Salesforce's URI limit and through Composite when not (``salesforce_soql``).

A settings' loopback sandbox URL is reached through ``adapters._kit.loopback.local_session``,
because simple-salesforce always speaks https.
"""

from __future__ import annotations

import codecs
import csv
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.util import exception_handler

from adapters._kit.http_retry import CONNECTION_ERRORS, RequestLog
from adapters._kit.loopback import local_session
from adapters._kit.settings import reveal
from adapters.salesforce.errors import (
    ErrorAnswer,
    Outcome,
    OutcomeUnknown,
    describe_answer,
    login_error,
    login_outcome,
    mirror_error,
    outcome,
)
from adapters.salesforce.settings import SalesforceSettings
from adapters.salesforce.soql import send_query
from mirror.errors import AuthError, ConfigError, TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_ANSWERS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    requests.exceptions.JSONDecodeError,
)
MAX_RENEWALS = 2
BULK_CHUNK_BYTES = 256 * 1024


class SalesforceConnection:
    """A logged-in simple-salesforce client plus the retry, renewal and error policy."""

    def __init__(
        self,
        settings: SalesforceSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Check ``settings`` (raising ``ConfigError``) and prepare the transport; no I/O."""
        problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.policy = settings.retry_policy
        self.sleep = sleep
        self.log = RequestLog(default_timeout=settings.timeout)
        self.domain = settings.login_domain()
        self.session = self.log.install(session or self._transport())
        self._client: Salesforce | None = None
        self._login_lock = threading.Lock()

    # --- transport and login ------------------------------------------------------------

    def _transport(self) -> requests.Session:
        sandbox = self.settings.sandbox_url()
        if sandbox is None:
            return requests.Session()
        extra = (
            () if self.domain in ("login", "test") else (f"https://{self.domain}.salesforce.com",)
        )
        return local_session(sandbox, extra_prefixes=extra)

    def client(self) -> Salesforce:
        """The current simple-salesforce client, logging in first when there is none."""
        with self._login_lock:
            if self._client is None:
                self._client = self._login()
            return self._client

    def renew(self, expired: Salesforce | None = None) -> None:
        """Log in again; ``AuthError`` when the settings cannot renew a session.

        With ``expired`` (the client whose session was refused), a client another thread has
        already renewed meanwhile is kept instead of logging in twice.
        """
        if self.settings.auth == "session":
            raise AuthError(
                "the Salesforce session expired and cannot be renewed; set "
                f"{self.settings.credential_hint()}"
            )
        with self._login_lock:
            if expired is None or self._client is expired:
                self._client = self._login()

    def _login(self) -> Salesforce:
        settings = self.settings
        if settings.auth == "session":
            return self._direct_client(str(reveal(settings.session_id)), str(settings.instance_url))
        attempt = 0
        while True:
            try:
                token, instance = SalesforceLogin(**self._login_arguments())
                return Salesforce(
                    session_id=token,
                    instance=instance,
                    session=self.session,
                    version=settings.api_version,
                    object_pairs_hook=dict,
                )
            except SalesforceAuthenticationFailed as error:
                said = getattr(error, "auth_message", None) or error.message
                failure = self._login_failure(error.code, " ".join(str(said).split()))
            except (AttributeError, TypeError):
                # simple-salesforce reading an error body of a shape it does not expect
                status = self.log.answer_status()
                if status is None or status < 400:
                    raise
                failure = ErrorAnswer(status, None, "an error answer simple-salesforce cannot read")
            except CONNECTION_ERRORS as error:
                failure = ErrorAnswer(None, None, f"no answer: {type(error).__name__}")
            retry_after = self.log.take_retry_after()
            retry = login_outcome(failure) is Outcome.RETRY
            if not retry or self.policy.gives_up(attempt, retry_after):
                raise login_error(failure, settings.credential_hint(), retry_after) from None
            self._pause(attempt, retry_after, "logging in", describe_answer(failure))
            attempt += 1

    def _login_failure(self, code: Any, message: str) -> ErrorAnswer:
        """A refused login as an answer: its HTTP status (simple-salesforce gives it as the
        code only when it could not read the body) and its error code, if any."""
        status = self.log.answer_status()
        text = None if code is None else str(code)
        if text is not None and text.isdigit():
            status, text = int(text), None
        return ErrorAnswer(status, text, message[:500])

    def _login_arguments(self) -> dict[str, Any]:
        s = self.settings
        arguments: dict[str, Any] = {
            "session": self.session,
            "domain": self.domain,
            "sf_version": s.api_version,
        }
        if s.auth == "client_credentials":
            return arguments | {
                "consumer_key": s.consumer_key,
                "consumer_secret": reveal(s.consumer_secret),
            }
        arguments |= {"username": s.username, "password": reveal(s.password)}
        if s.consumer_key and s.consumer_secret and s.security_token is None:
            return arguments | {
                "consumer_key": s.consumer_key,
                "consumer_secret": reveal(s.consumer_secret),
            }
        return arguments | {"security_token": reveal(s.security_token) or ""}

    def _direct_client(self, token: str, instance_url: str) -> Salesforce:
        return Salesforce(
            session_id=token,
            instance_url=instance_url,
            session=self.session,
            version=self.settings.api_version,
            object_pairs_hook=dict,
        )

    # --- calls ----------------------------------------------------------------------------

    def call(
        self, action: str, request: Callable[[Salesforce], T], *, idempotent: bool = True
    ) -> T:
        """Run ``request`` with the client; renew, retry or raise a ``MirrorError``.

        ``action`` completes "while ..." in error messages. A lost connection is retried only
        when ``idempotent``: otherwise the request may have been applied and is not repeated.
        """
        attempt = renewals = 0
        while True:
            client = self.client()
            try:
                return request(client)
            except SalesforceError as error:
                answer = ErrorAnswer.from_exception(error)
                retry_after = self.log.take_retry_after()
                kind = outcome(answer)
                if kind is Outcome.RENEW_SESSION and renewals < MAX_RENEWALS:
                    renewals += 1
                    log.info("Salesforce session expired while %s; logging in again", action)
                    self.renew(expired=client)
                    continue
                if kind is Outcome.RETRY and not self.policy.gives_up(attempt, retry_after):
                    self._pause(attempt, retry_after, action, describe_answer(answer))
                    attempt += 1
                    continue
                raise mirror_error(answer, action, retry_after) from error
            except RETRYABLE_ANSWERS as error:
                if not idempotent:
                    raise OutcomeUnknown(
                        f"lost the connection to Salesforce while {action} "
                        f"({type(error).__name__}); it may have been applied"
                    ) from error
                if self.policy.gives_up(attempt):
                    raise TransientError(
                        f"lost the connection to Salesforce while {action} "
                        f"({type(error).__name__}); try again later"
                    ) from error
                self._pause(attempt, None, action, type(error).__name__)
                attempt += 1

    def _pause(self, attempt: int, retry_after: float | None, action: str, cause: str) -> None:
        self.policy.pause(
            self.sleep, attempt, retry_after, what=f"Salesforce failed while {action}", cause=cause
        )

    def query(
        self, soql: str, *, include_deleted: bool = False, action: str = "querying"
    ) -> dict[str, Any]:
        """The first page of a SOQL query (``queryAll`` with ``include_deleted``), in the URL
        when it fits Salesforce's URI limit, else through Composite (``salesforce_soql``)."""
        headers = self._batch_header()
        return self.call(action, lambda sf: send_query(sf, soql, include_deleted, headers))

    def query_more(self, next_records_url: str, action: str = "paging a query") -> dict[str, Any]:
        """The page at ``next_records_url`` (a root-relative path)."""
        headers = self._batch_header()
        return self.call(
            action,
            lambda sf: sf.query_more(next_records_url, identifier_is_url=True, headers=headers),
        )

    def count(self, object_name: str) -> int:
        """``SELECT COUNT() FROM object_name``."""
        result = self.call(
            f"counting {object_name}", lambda sf: sf.query(f"SELECT COUNT() FROM {object_name}")
        )
        return int(result["totalSize"])

    def rest(
        self, action: str, path: str, *, method: str = "GET", idempotent: bool = True, **kwargs: Any
    ) -> Any:
        """A REST call under ``/services/data/vXX.X/`` (``composite/sobjects``, ``jobs/...``)."""
        return self.call(
            action, lambda sf: sf.restful(path, method=method, **kwargs), idempotent=idempotent
        )

    def bulk_results(
        self,
        job_id: str,
        locator: str | None,
        max_records: int,
        consume: Callable[[Iterator[list[str]]], T],
    ) -> tuple[T, str | None]:
        """One page of a Bulk API 2.0 query job's CSV results, handed to ``consume`` as parsed
        rows while it downloads (the page's text is never held whole), and the next locator
        (or None). A download cut short is retried from the page's start."""

        def fetch(sf: Salesforce) -> tuple[T, str | None]:
            params: dict[str, Any] = {"maxRecords": max_records}
            if locator:
                params["locator"] = locator
            with sf.session.get(
                f"{sf.bulk2_url}query/{job_id}/results",
                params=params,
                headers={"Authorization": f"Bearer {sf.session_id}", "Accept": "text/csv"},
                stream=True,
            ) as response:
                if response.status_code >= 300:
                    exception_handler(response, "bulk2 results")
                following = response.headers.get("Sforce-Locator")
                chunks = response.iter_content(chunk_size=BULK_CHUNK_BYTES)
                consumed = consume(csv.reader(text_lines(chunks)))
            return consumed, (None if following in (None, "", "null") else following)

        return self.call("reading Bulk API 2.0 results", fetch)

    def server_now(self) -> datetime:
        """The org's clock as its last answer's ``Date`` header said (local clock before)."""
        return self.log.last_server_date or datetime.now(UTC).replace(microsecond=0)

    def _batch_header(self) -> dict[str, str]:
        return {"Sforce-Query-Options": f"batchSize={self.settings.page_size}"}


def text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 byte stream, each ending with its ``\\n``, as ``csv.reader`` needs
    them (a quoted value's line breaks stay in the value)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for chunk in chunks:
        *lines, pending = (pending + decoder.decode(chunk)).split("\n")
        for line in lines:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending
