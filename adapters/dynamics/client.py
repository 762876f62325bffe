"""The Dataverse connection: msal client-credentials tokens and Web API requests with retries.

Tokens come from msal's ``ConfidentialClientApplication`` (client secret, or a certificate's
private key and thumbprint), built on first use. msal keeps the token in its cache and gets a
new one shortly before it expires; a 401 mid-run drops the cached token and repeats the request
once with a fresh one. Every request goes through one ``requests.Session`` whose ``send`` is
counted (``RequestLog``). Throttling (429 with ``Retry-After``) and server errors wait and
retry up to ``max_retries`` times, honouring ``Retry-After`` as a floor; a lost connection is
retried only for requests that are safe to repeat. The same holds for Entra ID (the tenant's
discovery and the token endpoint): only a refusal of the client (``invalid_client`` and the
like) is an ``AuthError``; an outage, throttling or a lost connection is waited on and ends,
retries spent, in a ``TransientError``. For a sandbox on the loopback interface the
session redirects the https URLs msal insists on to plain ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msal
import orjson
import requests
from msal.exceptions import MsalServiceError

from adapters._kit.http_retry import CONNECTION_ERRORS, RequestLog, parse_retry_after
from adapters._kit.loopback import mount_loopback
from adapters._kit.settings import reveal
from adapters._kit.url_budget import prepared_url, url_bytes
from adapters.dynamics import batch
from adapters.dynamics.errors import ErrorAnswer, Outcome, mirror_error, outcome
from adapters.dynamics.settings import DynamicsSettings
from mirror.errors import AuthError, ConfigError, CrmError, TransientError

T = TypeVar("T")

ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
URL_LIMIT = 32_768
"""Characters of URL Dataverse takes in one request ("Compose HTTP requests": Maximum URL
length); a request inside a ``$batch`` body may have a URL of up to twice that."""
BATCHED_URL_LIMIT = 65_536
URL_ALLOWANCE = 1_024
"""Characters kept below each limit, for a host or proxy that writes the URL longer."""
DIRECT_URL_BUDGET = URL_LIMIT - URL_ALLOWANCE
BATCHED_URL_BUDGET = BATCHED_URL_LIMIT - URL_ALLOWANCE
TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
"""OAuth error codes of an authorization server that is overloaded or failing (RFC 6749)."""
REFUSED_CLIENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "invalid_resource",
     "invalid_request", "unsupported_grant_type", "invalid_tenant", "invalid_grant"}
)  # fmt: skip


class EntraUnavailable(TransientError):
    """Entra ID answered a token request with an outage or throttling error."""


def _transient(status: int | None, error: str | None) -> bool:
    """Whether an Entra ID answer (HTTP ``status``, OAuth ``error``) is worth a retry."""
    return error in TRANSIENT_TOKEN_ERRORS or status is None or status == 429 or status >= 500


class DataverseConnection:
    """One authenticated session with a Dataverse organisation."""

    def __init__(self, settings: DynamicsSettings, session: requests.Session | None = None):
        """Prepare (without any request) a connection; ``ConfigError`` lists every problem."""
        problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.policy = settings.retry_policy
        self.log = RequestLog(settings.timeout)
        self.session = session or requests.Session()
        self._redirect_loopback()
        self.log.install(self.session)
        self.sleep: Callable[[float], None] = time.sleep
        self._app: msal.ConfidentialClientApplication | None = None
        self._http_cache: dict[Any, Any] = {}
        self.rate_limit: dict[str, str] = {}
        self.token_renewals = 0

    def _redirect_loopback(self) -> None:
        bases = self.settings.loopback_bases()
        if not bases:
            return
        self.session.trust_env = False
        for base in bases:
            mount_loopback(self.session, base, base.rsplit(":", 1)[-1])

    # --- tokens --------------------------------------------------------------------------

    def _credential(self) -> str | dict[str, str]:
        settings = self.settings
        if not settings.certificate_path:
            return str(reveal(settings.client_secret))
        try:
            pem = Path(settings.certificate_path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"dynamics.certificate_path: cannot read {settings.certificate_path} "
                f"({error.strerror})"
            ) from None
        if settings.certificate_thumbprint:
            return {"private_key": pem, "thumbprint": settings.certificate_thumbprint}
        return {"private_key": pem, "public_certificate": pem}

    def _msal(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            self._app = self._entra("reaching Entra ID", self._build_app)
        return self._app

    def _build_app(self) -> msal.ConfidentialClientApplication:
        settings = self.settings
        try:
            return msal.ConfidentialClientApplication(
                str(settings.client_id),
                client_credential=self._credential(),
                authority=settings.authority,
                instance_discovery=settings.validates_authority,
                http_client=self.session,
                token_cache=msal.TokenCache(),
                http_cache=self._http_cache,
            )
        except ValueError as error:
            raise AuthError(
                f"Entra ID tenant {settings.tenant_id} could not be discovered at "
                f"{settings.authority} ({str(error)[:200]}); check dynamics.tenant_id and "
                "dynamics.authority_url"
            ) from None

    def token(self) -> str:
        """A live access token (msal's cache, renewed shortly before it expires)."""
        app = self._msal()
        return self._entra("getting a token from Entra ID", lambda: self._acquire(app))

    def _acquire(self, app: msal.ConfidentialClientApplication) -> str:
        result = app.acquire_token_for_client(scopes=[self.settings.scope])
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "").split(" Trace ID:")[0]
        said = f"{error}: {description[:300]}"
        if error in REFUSED_CLIENT_ERRORS or not _transient(self.log.answer_status(), error):
            raise AuthError(
                f"Entra ID refused the client credentials ({said}); "
                f"check {self.settings.credential_hint()}"
            )
        raise EntraUnavailable(said)

    def _entra(self, action: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` with Entra ID's outages, throttling and lost connections waited on
        and retried; ``TransientError`` once the retries are spent, never ``AuthError``."""
        for tries in itertools.count():
            try:
                return attempt()
            except CONNECTION_ERRORS as error:
                cause = f"no answer: {type(error).__name__}"
            except MsalServiceError:
                status = self.log.answer_status()
                if not _transient(status, None):
                    raise AuthError(
                        f"Entra ID refused {action} (HTTP {status}); check "
                        f"{self.settings.credential_hint()}"
                    ) from None
                cause = f"HTTP {status}"
            except EntraUnavailable as error:
                cause = str(error)
            retry_after = self.log.take_retry_after()
            if self.policy.gives_up(tries, retry_after):
                raise TransientError(
                    f"Entra ID kept failing while {action} ({cause}); try again later",
                    retry_after=retry_after,
                ) from None
            self.policy.pause(
                self.sleep, tries, retry_after, what=f"Entra ID failed while {action}", cause=cause
            )
            # msal replays a throttled answer until its Retry-After (5 s without one) is
            # over; the wait above honoured it, so the retry goes to Entra ID again
            self._http_cache.clear()
        raise AssertionError("unreachable")

    def renew_token(self) -> None:
        """Drop the cached token so the next request gets a fresh one."""
        self._msal().remove_tokens_for_client()
        self.token_renewals += 1

    # --- requests ------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """An absolute Web API URL (links the service sent back are used verbatim)."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.settings.api_base}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        action: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        prefer: str | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """Send one request; retries, token renewal and error mapping included.

        Returns responses below 400 (and 304); raises the ``MirrorError`` of anything else.
        """
        url = self.url(path_or_url)
        attempt = 0
        renewed = False
        while True:
            sent = {**ODATA_HEADERS, **(headers or {}), "Authorization": f"Bearer {self.token()}"}
            if prefer:
                sent["Prefer"] = prefer
            if json is not None:
                sent["Content-Type"] = "application/json"
            try:
                response = self.session.request(
                    method, url, params=params, json=json, data=data, headers=sent
                )
            except CONNECTION_ERRORS as error:
                if not idempotent or self.policy.gives_up(attempt):
                    raise TransientError(
                        f"the connection to Dataverse failed while {action} "
                        f"({type(error).__name__}); try again later"
                    ) from None
                self.policy.pause(
                    self.sleep,
                    attempt,
                    what=f"the connection to Dataverse failed while {action}",
                    cause=type(error).__name__,
                )
                attempt += 1
                continue
            self._observe(response)
            if response.status_code < 400:
                return response
            answer = ErrorAnswer.from_response(response)
            kind = outcome(answer)
            if kind is Outcome.RENEW_TOKEN and not renewed:
                self.renew_token()
                renewed = True
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if kind is Outcome.RETRY and not self.policy.gives_up(attempt, retry_after):
                self.policy.pause(
                    self.sleep,
                    attempt,
                    retry_after,
                    what=f"Dataverse failed while {action}",
                    cause=f"HTTP {response.status_code}",
                )
                attempt += 1
                continue
            raise mirror_error(answer, action, retry_after)

    def get_json(
        self, path_or_url: str, *, action: str, prefer: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """``GET`` and decode the JSON answer. A URL longer than Dataverse takes (32,768
        characters) is sent as the one request of a ``$batch`` body instead, where URLs of
        up to 65,536 characters are accepted."""
        url = prepared_url(self.url(path_or_url), kwargs.get("params"))
        if url_bytes(url) > DIRECT_URL_BUDGET:
            return self._get_batched(url, action, prefer, kwargs.get("headers"))
        response = self.request("GET", path_or_url, action=action, prefer=prefer, **kwargs)
        body: dict[str, Any] = orjson.loads(response.content)
        return body

    def _get_batched(
        self, url: str, action: str, prefer: str | None, headers: Mapping[str, str] | None
    ) -> dict[str, Any]:
        """``GET url`` inside ``$batch`` (with ``odata.continue-on-error``, so the batch itself
        answers 200 and the request's own answer comes inside); that answer's errors get the
        same renewal, retry and mapping as a direct request's."""
        if url_bytes(url) > BATCHED_URL_BUDGET:
            raise ConfigError(
                f"a Dataverse request URL of {url_bytes(url):,} characters is over the "
                f"{BATCHED_URL_LIMIT:,} Dataverse takes even inside $batch ({action})"
            )
        inner = {**ODATA_HEADERS, **(headers or {})}
        if prefer:
            inner["Prefer"] = prefer
        content_type, payload = batch.build([batch.BatchRequest("GET", url, inner)])
        attempt = 0
        renewed = False
        while True:
            response = self.request("POST", "$batch", action=action, data=payload,
                                    headers={"Content-Type": content_type},
                                    prefer="odata.continue-on-error")  # fmt: skip
            answers = batch.parse(response.headers.get("Content-Type", ""), response.content)
            if len(answers) != 1:
                raise CrmError(f"Dataverse answered {len(answers)} requests of a $batch of one",
                               status=response.status_code)  # fmt: skip
            answer = answers[0]
            if answer.status < 400:
                body: dict[str, Any] = answer.json()
                return body
            error = ErrorAnswer.from_parts(answer.status, answer.body)
            kind = outcome(error)
            retry_after = parse_retry_after(answer.headers.get("retry-after"))
            if kind is Outcome.RENEW_TOKEN and not renewed:
                self.renew_token()
                renewed = True
                continue
            if kind is Outcome.RETRY and not self.policy.gives_up(attempt, retry_after):
                self.policy.pause(
                    self.sleep,
                    attempt,
                    retry_after,
                    what=f"Dataverse failed while {action}",
                    cause=f"HTTP {answer.status}",
                )
                attempt += 1
                continue
            raise mirror_error(error, action, retry_after)

    def _observe(self, response: requests.Response) -> None:
        for name in ("x-ms-ratelimit-burst-remaining-xrm-requests",
                     "x-ms-ratelimit-time-remaining-xrm-requests"):  # fmt: skip
            value = response.headers.get(name)
            if value is not None:
                self.rate_limit[name] = value
