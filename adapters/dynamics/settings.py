"""Settings of the Dynamics 365 (Dataverse) adapter: the organisation, the app registration,
how hard to push the Web API.

``DynamicsSettings`` is the one validation of a Dynamics source's settings (the entry point's
plugin checks a config with it): ``problems`` lists every problem at once, worded as what to set;
the client secret is a ``SecretStr`` and never appears in ``repr``. Plain ``http://`` is
accepted only for a sandbox on the loopback interface (then the https-only Entra ID client
reaches it through a transport adapter).
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from adapters._kit.http_retry import RetryPolicy
from adapters._kit.settings import AdapterSettings

MAX_PAGE_SIZE = 5000
# what a config may ask for: larger pages are served as MAX_PAGE_SIZE
MAX_CONFIG_PAGE_SIZE = 10_000
MAX_BATCH_REQUESTS = 1000
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
WEBHOOK_AUTH_TYPES = ("WebhookKey", "HttpHeader", "HttpQueryString")
MICROSOFT_AUTHORITY_HOSTS = (
    "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
)  # fmt: skip


class DynamicsSettings(AdapterSettings):
    """How to reach and authenticate to one Dataverse organisation, and how hard to push it.

    The app registration signs in with ``client_secret`` or with a certificate:
    ``certificate_path`` is a PEM file holding the private key and the certificate
    (``certificate_thumbprint``, the SHA-1 thumbprint Entra ID shows, is then optional: without
    it the certificate's SHA-256 thumbprint is used). ``page_size`` is clamped to 1..5,000 (the
    Web API's maximum); ``batch_size`` to 1..1,000 requests per ``$batch``.

    Webhooks (``docs/streams-dynamics.md``): ``webhook_key`` is the key the service endpoint
    sends, as ``webhook_auth`` says: ``WebhookKey`` (query string ``?code=<key>``),
    ``HttpHeader`` (header ``<webhook_key_name>: <key>``) or ``HttpQueryString``
    (``?<webhook_key_name>=<key>``). Without it, every delivery is refused.
    """

    label: ClassVar[str] = "dynamics"

    org_url: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    certificate_path: str | None = None
    certificate_thumbprint: str | None = None
    authority_url: str | None = None
    page_size: int = 2000
    max_retries: int = Field(default=6, ge=0, le=20)
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    timeout: float = 120.0
    batch_size: int = 100
    web_api_version: str = "9.2"
    webhook_key: SecretStr | None = None
    webhook_auth: str = "WebhookKey"
    webhook_key_name: str = "x-prm-mirror-key"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff settings as a ``RetryPolicy``."""
        return RetryPolicy(self.max_retries, self.backoff_base, self.backoff_max)

    @property
    def effective_page_size(self) -> int:
        """``page_size`` clamped to what the Web API serves (1..5,000)."""
        return min(max(int(self.page_size), 1), MAX_PAGE_SIZE)

    @property
    def effective_batch_size(self) -> int:
        """``batch_size`` clamped to what one ``$batch`` may hold (1..1,000)."""
        return min(max(int(self.batch_size), 1), MAX_BATCH_REQUESTS)

    @property
    def api_base(self) -> str:
        """``<org_url>/api/data/v9.2``."""
        return f"{str(self.org_url).rstrip('/')}/api/data/v{self.web_api_version}"

    @property
    def resource(self) -> str:
        """The organisation as an Entra ID resource: always ``https://host[:port]``."""
        return f"https://{urlsplit(str(self.org_url)).netloc}"

    @property
    def scope(self) -> str:
        """The client-credentials scope: ``https://<org host>/.default``."""
        return f"{self.resource}/.default"

    @property
    def authority(self) -> str:
        """The msal authority: ``https://<authority host>/<tenant>`` (https even for a
        loopback sandbox, which the session's transport adapter redirects)."""
        parts = urlsplit(self.authority_url or DEFAULT_AUTHORITY)
        return f"https://{parts.netloc}{parts.path.rstrip('/')}/{self.tenant_id}"

    @property
    def validates_authority(self) -> bool:
        """Whether msal may run instance discovery (only for Microsoft's own hosts)."""
        host = urlsplit(self.authority_url or DEFAULT_AUTHORITY).hostname or ""
        return host in MICROSOFT_AUTHORITY_HOSTS

    def loopback_bases(self) -> list[str]:
        """``http://127.0.0.1:PORT`` of the org and authority URLs that are loopback sandboxes."""
        bases = []
        for url in (self.authority_url, self.org_url):
            if url and url_kind(url) == "loopback":
                parts = urlsplit(url)
                base = f"http://{parts.netloc}"
                if base not in bases:
                    bases.append(base)
        return bases

    def problems(self) -> list[str]:
        """Every configuration problem, worded as what to set (empty when usable)."""
        found = [
            f"dynamics.{name}: required"
            for name in ("org_url", "tenant_id", "client_id")
            if not getattr(self, name)
        ]
        if not (self.client_secret or self.certificate_path):
            found.append("dynamics.client_secret or dynamics.certificate_path: required")
        for name in ("org_url", "authority_url"):
            url = getattr(self, name)
            if url and url_kind(url) == "refused":
                found.append(
                    f"dynamics.{name} must be https:// (plain http is accepted only for a "
                    f"sandbox on 127.0.0.1, localhost or ::1): got {url!r}"
                )
        if not 1 <= self.page_size <= MAX_CONFIG_PAGE_SIZE:
            found.append(f"dynamics.page_size must be between 1 and {MAX_CONFIG_PAGE_SIZE:,}")
        if self.webhook_auth not in WEBHOOK_AUTH_TYPES:
            found.append(
                f"dynamics.webhook_auth must be one of {', '.join(WEBHOOK_AUTH_TYPES)}: got "
                f"{self.webhook_auth!r}"
            )
        if self.webhook_key is not None and len(self.webhook_key.get_secret_value()) < 16:
            found.append("dynamics.webhook_key must be at least 16 characters (a random key)")
        if self.max_retries < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            found.append("dynamics.max_retries and the backoff settings must not be negative")
        return found

    def credential_hint(self) -> str:
        """Which settings to check when Entra ID refuses the client (names only)."""
        secret = "dynamics.certificate_path" if self.certificate_path else "dynamics.client_secret"
        return f"dynamics.tenant_id, dynamics.client_id and {secret}"


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
