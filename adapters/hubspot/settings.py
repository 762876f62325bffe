"""Settings of the HubSpot adapter: which portal, which token, how hard to push it.

Field names match the ``[sources.<name>]`` keys the adapter factory passes (``access_token``,
``host``, ``page_size``, ``max_retries``); the rest have defaults suited to a Professional
portal. The model is the one validation of a HubSpot source's settings (the entry point's plugin
checks a config with it): ``problems`` lists every problem at once; the token is a
``SecretStr`` and never appears in ``repr``. Plain ``http://`` is accepted only for a sandbox on
the loopback interface.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from adapters._kit.http_retry import RetryPolicy
from adapters._kit.settings import AdapterSettings
from adapters.salesforce.settings import url_kind

DEFAULT_HOST = "https://api.hubapi.com"
LIST_PAGE_MAX = 100
SEARCH_PAGE_MAX = 200
ASSOCIATION_BATCH_MAX = 1_000


class HubSpotSettings(AdapterSettings):
    """How to reach one HubSpot portal and how hard to push it.

    ``access_token`` is a private-app token (``pat-…``) or an OAuth access token. Pages are
    ``page_size`` records, clamped to HubSpot's maxima (100 for lists, 200 for searches); a
    backfill page gathers list calls up to ``page_size`` records (at most 1,000: the ids of
    one association ``batch/read``).
    ``partner_label`` names the deal-to-company association label that attributes a deal to a
    partner; set ``partner_property`` instead when a deal property holds the partner company
    id. Association changes do not move HubSpot's last-modified values, so every
    ``association_sweep_seconds`` the objects with association fields are re-read in full
    (0: on every incremental read). ``search_per_second`` paces searches below HubSpot's
    separate search limit; ``burst_reserve`` requests of each ten-second window are left free
    for other integrations of the portal.

    Webhooks (``hubspot_webhooks``): ``client_secret`` is the HubSpot app's client secret, which
    signs every delivery (``X-HubSpot-Signature-v3``); keep it in the environment
    (``client_secret = "${HUBSPOT_CLIENT_SECRET}"``). ``webhook_url`` is the target URL as
    registered in the app, when the daemon is reached through a proxy that changes it (the
    signature covers the URL HubSpot called). ``app_id`` and ``developer_api_key`` (the
    developer account's key) let ``register_webhooks`` set the app's target and subscriptions.
    """

    label: ClassVar[str] = "hubspot"

    access_token: SecretStr | None = None
    host: str | None = None
    page_size: int = Field(default=2000, le=10_000)
    max_retries: int = Field(default=6, ge=0, le=20)
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    timeout: float = 60.0
    partner_label: str = "Partner"
    partner_property: str | None = None
    mirror_key_property: str = "prm_mirror_key"
    association_sweep_seconds: float = 3600.0
    search_per_second: float = 4.0
    burst_reserve: int = 5
    max_rate_limit_waits: int = 20
    client_secret: SecretStr | None = None
    webhook_url: str | None = None
    app_id: int | None = None
    developer_api_key: SecretStr | None = None

    @property
    def base_url(self) -> str:
        """The API host (HubSpot's unless a sandbox is named)."""
        return (self.host or DEFAULT_HOST).rstrip("/")

    @property
    def list_limit(self) -> int:
        """Records per list page."""
        return max(1, min(self.page_size, LIST_PAGE_MAX))

    @property
    def read_page(self) -> int:
        """Records per backfill or sweep page: list calls of ``list_limit`` gathered up to
        ``page_size``, at most the ids of one association ``batch/read``."""
        return max(self.list_limit, min(self.page_size, ASSOCIATION_BATCH_MAX))

    @property
    def search_limit(self) -> int:
        """Records per search page."""
        return max(1, min(self.page_size, SEARCH_PAGE_MAX))

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff settings as a ``RetryPolicy``."""
        return RetryPolicy(self.max_retries, self.backoff_base, self.backoff_max)

    def problems(self) -> list[str]:
        """Every configuration problem, worded as what to set (empty when usable)."""
        found: list[str] = []
        if not self.access_token:
            found.append("hubspot.access_token: required (a private app's access token)")
        if self.host and url_kind(self.host) == "refused":
            found.append(
                "hubspot.host must be https:// (plain http is accepted only for a sandbox on "
                f"127.0.0.1, localhost or ::1): got {self.host!r}"
            )
        if self.webhook_url and url_kind(self.webhook_url) == "refused":
            found.append(
                "hubspot.webhook_url must be https:// (plain http only on 127.0.0.1, localhost "
                f"or ::1): got {self.webhook_url!r}"
            )
        if self.page_size < 1:
            found.append("hubspot.page_size must be at least 1")
        if self.search_per_second <= 0:
            found.append("hubspot.search_per_second must be positive")
        if self.association_sweep_seconds < 0:
            found.append("hubspot.association_sweep_seconds must not be negative")
        return found
