"""The typed configuration: TOML in, a validated ``MirrorConfig`` out, all problems at once.

Secrets never live in the file: any string value may be ``${ENV_VAR}`` (or ``${ENV_VAR:-default}``),
resolved from the environment when the file is loaded. A missing variable is a problem like any
other, reported by name only.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mirror.errors import ConfigError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_KEYS = frozenset(
    {"password", "security_token", "consumer_secret", "client_secret", "session_id", "access_token"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    """Where the mirror lives."""

    database: str = Field(
        default="sqlite:///prm-mirror.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )

    @field_validator("database")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value


class SyncConfig(_Strict):
    """How pulls and pushes run."""

    prefetch_pages: int = Field(default=1, ge=0, le=8)
    sweep_after_backfill: bool = False
    push_batch_size: int = Field(default=10_000, ge=1, le=50_000)
    push_max_attempts: int = Field(default=8, ge=1, le=50)
    push_retry_delay: float = Field(default=1.0, ge=0, le=600)
    backfill_ranges: int = Field(
        default=1, ge=1, le=256, description="ranges one object's backfill is split into"
    )
    backfill_range_min_records: int = Field(
        default=50_000, ge=0, description="objects with fewer records are backfilled whole"
    )


class DaemonConfig(_Strict):
    """How `prm-mirror daemon` schedules the work."""

    sync_interval: float = Field(default=60.0, gt=0, description="seconds between syncs")
    push_interval: float = Field(default=5.0, gt=0, description="seconds between pushes")
    sweep_cron: str = Field(default="0 3 * * *", description="crontab: the delete sweep")
    audit_cron: str = Field(default="30 3 * * 0", description="crontab: the self-audit")
    jitter: float = Field(default=5.0, ge=0, description="random seconds added to each run")
    lease_seconds: float = Field(default=300.0, gt=0)
    range_interval: float = Field(
        default=5.0, gt=0, description="seconds between looks for backfill ranges to work"
    )
    worker_id: str | None = None
    metrics_host: str = Field(
        default_factory=lambda: os.environ.get("PRM_MIRROR_METRICS_HOST", "127.0.0.1"),
        description="default 127.0.0.1, or $PRM_MIRROR_METRICS_HOST (0.0.0.0 in the container)",
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0: no endpoint")
    api_reserve: float = Field(
        default=0.2, ge=0, lt=1, description="share of the org's daily API limit left free"
    )
    audit_sample: int = Field(default=200, ge=0, le=100_000)
    log_format: Literal["json", "text"] = "json"


class SourceConfig(_Strict):
    """One CRM org to mirror; the table prefix is the source's name in ``[sources.<name>]``."""

    crm: Literal["salesforce", "hubspot", "dynamics"]
    objects: list[str] | None = None
    instance_url: str | None = None
    login_url: str | None = None
    auth: Literal["password", "client_credentials", "session", "token"] = "password"
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    consumer_key: str | None = None
    consumer_secret: str | None = None
    session_id: str | None = None
    domain: str = "login"
    api_version: str = "59.0"
    page_size: int = Field(default=2000, ge=1, le=10_000)
    bulk_threshold: int = Field(default=50_000, ge=0)
    bulk_page_size: int = Field(default=10_000, ge=1)
    max_retries: int = Field(default=6, ge=0, le=20)
    access_token: str | None = None
    host: str | None = None
    org_url: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    certificate_path: str | None = None
    certificate_thumbprint: str | None = None
    authority_url: str | None = None
    partner_label: str = "Partner"
    partner_property: str | None = None
    association_sweep_seconds: float = Field(default=3600.0, ge=0)
    search_per_second: float = Field(default=4.0, gt=0, le=5)
    visibility: dict[str, Any] = Field(default_factory=dict)
    registrations: dict[str, Any] = Field(default_factory=dict)
    conflicts: dict[str, Literal["crm_wins", "portal_wins", "latest_wins", "manual"]] = Field(
        default_factory=dict,
        description='policy per "default", "<Object>" or "<Object>.<Field>"',
    )

    def adapter_settings(self) -> dict[str, Any]:
        """The settings an adapter factory receives (every field but ``crm`` and ``objects``)."""
        return self.model_dump(
            exclude={"crm", "objects", "visibility", "conflicts", "registrations"}
        )


class MirrorConfig(_Strict):
    """The whole configuration file."""

    store: StoreConfig = StoreConfig()
    sync: SyncConfig = SyncConfig()
    daemon: DaemonConfig = DaemonConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    schemas_dir: str | None = None

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name):
                raise ValueError(f"source name {name!r} must be lower-case letters, digits, _")
        return value


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> MirrorConfig:
    """Read, resolve and validate a TOML config; raise ``ConfigError`` listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file (run `prm-mirror init` to write one)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, environ, origin=str(path))


def parse_config(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None, origin: str = "config"
) -> MirrorConfig:
    """Validate an already-parsed mapping (``${VAR}`` references resolved from ``environ``)."""
    problems: list[str] = []
    resolved = _resolve_env(raw, os.environ if environ is None else environ, (), problems)
    try:
        config = MirrorConfig.model_validate(resolved)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
        config = None
    if config is not None:
        problems.extend(_check_sources(config))
    if problems:
        raise ConfigError([f"{origin}: {p}" for p in problems])
    assert config is not None
    return config


def _resolve_env(
    value: Any, environ: Mapping[str, str], where: tuple[str, ...], problems: list[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_env(v, environ, (*where, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, environ, (*where, str(i)), problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{'.'.join(where)}: environment variable {name} is not set")
        return ""

    return ENV_REFERENCE.sub(substitute, value)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown option (check the spelling against config/example.toml)"
    return f"{location}: {message}"


def _check_sources(config: MirrorConfig) -> list[str]:
    problems: list[str] = []
    if not config.sources:
        problems.append("sources: at least one [sources.<name>] table is required")
    for name, source in config.sources.items():
        problems.extend(f"sources.{name}.{p}" for p in _check_credentials(source))
    return problems


def _check_credentials(source: SourceConfig) -> list[str]:
    if source.crm == "hubspot":
        return [] if source.access_token else ["access_token: required for HubSpot"]
    if source.crm == "dynamics":
        keys = ("org_url", "tenant_id", "client_id")
        missing = [f"{k}: required for Dynamics 365" for k in keys if not getattr(source, k)]
        if not (source.client_secret or source.certificate_path):
            missing.append("client_secret or certificate_path: required for Dynamics 365")
        return missing
    needed = {
        "password": ("username", "password"),
        "client_credentials": ("consumer_key", "consumer_secret"),
        "session": ("instance_url", "session_id"),
    }.get(source.auth, ())
    missing = [key for key in needed if not getattr(source, key)]
    if source.auth == "client_credentials" and not (source.instance_url or source.login_url):
        missing.append("instance_url")
    return [f"{key}: required when auth = {source.auth!r}" for key in missing]


def secret_values(config: MirrorConfig) -> list[str]:
    """The secret values of ``config``: each source's secret settings and the store URL's
    password (what logs and printed errors must never show)."""
    found = [
        str(value)
        for source in config.sources.values()
        for key, value in source.model_dump().items()
        if key in SECRET_KEYS and value
    ]
    try:
        password = make_url(config.store.database).password
    except ArgumentError:
        password = None
    if password:
        found.append(str(password))
    return found


def redact(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` safe to print: secret values replaced by ``***``."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in settings.items()}
