"""Settings of the Salesforce adapter: where the org is, how to log in, how hard to push it.

``SalesforceSettings`` is the one validation of a Salesforce source's settings (the entry point's
plugin checks a config with it): ``problems`` lists every problem at once, worded as what to
set; secrets are ``SecretStr`` and never appear in ``repr``. Plain ``http://`` is accepted only
for a sandbox on the loopback interface.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from adapters._kit.http_retry import RetryPolicy
from adapters._kit.settings import AdapterSettings

AUTH_MODES = ("password", "client_credentials", "session")
SANDBOX_DOMAIN = "sandbox.my"


class SalesforceSettings(AdapterSettings):
    """How to reach and authenticate to one Salesforce org, and how hard to push it.

    ``auth`` is ``"password"`` (username + password + security_token through SOAP, or
    username + password + consumer_key/secret through OAuth), ``"client_credentials"``
    (consumer_key/secret of a connected app on a My Domain) or ``"session"`` (an existing
    session_id on instance_url, which cannot be renewed). For a local sandbox, point
    ``instance_url`` or ``login_url`` at ``http://127.0.0.1:PORT``.

    Change Data Capture is read through the Pub/Sub API at ``pubsub_endpoint`` (Salesforce's
    global ``api.pubsub.salesforce.com:7443``; a loopback ``127.0.0.1:PORT`` for a sandbox)
    with the session the adapter already has, on ``cdc_channel`` (the standard
    ``/data/ChangeEvents`` or a custom channel of the mirrored objects); ``stream_batch`` is
    how many events each
    ``FetchRequest`` asks for (at most 100) and ``org_id`` the tenant id, read from the session
    id when not set.
    """

    label: ClassVar[str] = "salesforce"

    instance_url: str | None = None
    auth: str = "password"
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    consumer_key: str | None = None
    consumer_secret: SecretStr | None = None
    session_id: SecretStr | None = None
    domain: str = "login"
    login_url: str | None = None
    api_version: str = "59.0"
    page_size: int = Field(default=2000, ge=1, le=10_000)
    bulk_threshold: int = 50_000
    bulk_page_size: int = 10_000
    max_retries: int = Field(default=6, ge=0, le=20)
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    timeout: float = 120.0
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"
    cdc_channel: str = "/data/ChangeEvents"
    stream_batch: int = Field(default=100, ge=1, le=100)
    org_id: str | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff settings as a ``RetryPolicy``."""
        return RetryPolicy(self.max_retries, self.backoff_base, self.backoff_max)

    def problems(self) -> list[str]:
        """Every configuration problem, worded as what to set (empty when usable)."""
        found: list[str] = []
        if self.auth not in AUTH_MODES:
            found.append(f"salesforce.auth must be one of {', '.join(AUTH_MODES)}")
        required = {
            "password": ("username", "password"),
            "client_credentials": ("consumer_key", "consumer_secret"),
            "session": ("session_id", "instance_url"),
        }.get(self.auth, ())
        found += [
            f"salesforce.{name}: required for auth = {self.auth!r}"
            for name in required
            if not getattr(self, name)
        ]
        for name in ("instance_url", "login_url"):
            url = getattr(self, name)
            if url and url_kind(url) == "refused":
                found.append(
                    f"salesforce.{name} must be https:// (plain http is accepted only "
                    f"for a sandbox on 127.0.0.1, localhost or ::1): got {url!r}"
                )
        if (
            self.login_url
            and url_kind(self.login_url) == "https"
            and not (urlsplit(self.login_url).hostname or "").endswith(".salesforce.com")
        ):
            found.append(
                "salesforce.login_url must be a *.salesforce.com address (or leave it "
                f"out and set salesforce.domain): got {self.login_url!r}"
            )
        if self.auth == "client_credentials" and self.login_domain() in ("login", "test"):
            found.append(
                "salesforce.domain must be your My Domain (e.g. 'acme.my') for "
                "client_credentials auth"
            )
        host, _, port = self.pubsub_endpoint.rpartition(":")
        if not host or not port.isdigit():
            found.append(
                "salesforce.pubsub_endpoint must be host:port (Salesforce's is "
                f"api.pubsub.salesforce.com:7443): got {self.pubsub_endpoint!r}"
            )
        if not self.cdc_channel.startswith("/data/"):
            found.append(
                "salesforce.cdc_channel must be a change event channel (/data/ChangeEvents "
                f"or a custom /data/<Name>__chn): got {self.cdc_channel!r}"
            )
        if not 200 <= self.page_size <= 2000:
            found.append("salesforce.page_size must be between 200 and 2000")
        if self.bulk_page_size < 1 or self.bulk_threshold < 0:
            found.append(
                "salesforce.bulk_page_size must be positive and "
                "salesforce.bulk_threshold not negative"
            )
        return found

    def sandbox_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` when login or instance URL is a loopback sandbox."""
        for url in (self.login_url, self.instance_url):
            if url and url_kind(url) == "loopback":
                return base_of(url)
        return None

    def pubsub_is_loopback(self) -> bool:
        """Whether the Pub/Sub API endpoint is a sandbox on this machine (plain HTTP/2;
        anything else is reached over TLS)."""
        host = self.pubsub_endpoint.rpartition(":")[0].strip("[]")
        return _is_loopback(host)

    def login_domain(self) -> str:
        """The ``X`` of ``https://X.salesforce.com`` that logins go to."""
        if self.login_url and url_kind(self.login_url) == "https":
            return (urlsplit(self.login_url).hostname or "").removesuffix(".salesforce.com")
        if self.sandbox_url() and self.domain in ("login", "test"):
            return SANDBOX_DOMAIN if self.auth == "client_credentials" else self.domain
        return self.domain

    def credential_hint(self) -> str:
        """Which settings to check when a login is refused (names only, never values)."""
        return {
            "password": "salesforce.username, salesforce.password and salesforce.security_token"
            " (or consumer_key/consumer_secret)",
            "client_credentials": "salesforce.consumer_key, salesforce.consumer_secret and "
            "salesforce.domain (your My Domain)",
            "session": "salesforce.session_id (or switch to password/client_credentials auth "
            "so sessions renew themselves)",
        }.get(self.auth, "salesforce.auth")


def url_kind(url: str) -> str:
    """``"https"``, ``"loopback"`` (plain http to this machine) or ``"refused"``."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return "https"
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return "loopback"
    return "refused"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
