"""The typed configuration: TOML in, a validated ``MirrorConfig`` out, all problems at once.

The engine's keys are checked here; each source's CRM settings by the plugin of its adapter
(``mirror.registry``), in the same pass, so one ``ConfigError`` lists every problem.

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
from mirror.registry import find_plugin, unknown_crm

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# settings that hold secrets whatever the CRM; each adapter's plugin names its own as well
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
    pool_size: int = Field(
        default=5, ge=1, le=1000, description="connections kept open for this process"
    )
    max_overflow: int = Field(
        default=10, ge=0, le=1000, description="connections opened beyond them, closed after use"
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
    webhook_host: str = Field(
        default_factory=lambda: os.environ.get("PRM_MIRROR_WEBHOOK_HOST", "127.0.0.1"),
        description="where CRM webhooks are received: default 127.0.0.1, or "
        "$PRM_MIRROR_WEBHOOK_HOST",
    )
    webhook_port: int = Field(
        default=9465, ge=0, le=65535, description="POST /hooks/<source>; 0: no endpoint"
    )
    webhook_public_url: str | None = Field(
        default=None,
        description="the address the CRM posts to, when a proxy stands in front (the "
        "delivery's URL is rebuilt on it, as signatures cover it)",
    )
    push_wake_window: float = Field(
        default=0.2, ge=0, le=60, description="seconds a portal write waits for more to push"
    )
    push_wake_poll: float = Field(
        default=0.25,
        ge=0,
        le=60,
        description="seconds between looks for other processes' "
        "portal writes (SQLite; PostgreSQL is told at once); 0: only this process's",
    )
    stream_batch_window: float = Field(
        default=0.5, ge=0, le=60, description="seconds a stream event waits for more to apply"
    )
    stream_retry_max: float = Field(
        default=60.0, gt=0, le=3600, description="longest wait before a listener reconnects"
    )


class SourceConfig(_Strict):
    """One CRM org to mirror; the table prefix is the source's name in ``[sources.<name>]``.

    The engine's keys are fields; every other key of the table belongs to the CRM's adapter,
    whose plugin validates them (``adapter_settings``) when the config is loaded.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    crm: str = Field(description="which installed adapter serves the source")
    objects: list[str] | None = None
    visibility: dict[str, Any] = Field(default_factory=dict)
    registrations: dict[str, Any] = Field(default_factory=dict)
    conflicts: dict[str, Literal["crm_wins", "portal_wins", "latest_wins", "manual"]] = Field(
        default_factory=dict,
        description='policy per "default", "<Object>" or "<Object>.<Field>"',
    )
    stream: bool = Field(
        default=False,
        description="also take changes from the CRM's change stream (polling stays the backstop)",
    )

    def adapter_settings(self) -> dict[str, Any]:
        """The CRM's own settings: every key of the table but the engine's."""
        return dict(self.model_extra or {})


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
    problems.extend(_source_problems(resolved.get("sources")))
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


def _source_problems(sources: Any) -> list[str]:
    """What each source's adapter plugin finds wrong with its CRM settings (read from the raw
    tables, so they are reported along with every other problem of the file)."""
    if not sources:
        return ["sources: at least one [sources.<name>] table is required"]
    if not isinstance(sources, Mapping):
        return []
    problems: list[str] = []
    for name, table in sources.items():
        crm = table.get("crm") if isinstance(table, Mapping) else None
        if not isinstance(crm, str):
            continue
        plugin = find_plugin(crm)
        if plugin is None:
            problems.append(f"sources.{name}.crm: {unknown_crm(crm)}")
            continue
        settings = {k: v for k, v in table.items() if k not in SourceConfig.model_fields}
        problems.extend(f"sources.{name}: {p}" for p in plugin.validate_settings(settings))
    return problems


def secret_values(config: MirrorConfig) -> list[str]:
    """The secret values of ``config``: each source's secret settings and the store URL's
    password (what logs and printed errors must never show)."""
    found: list[str] = []
    for source in config.sources.values():
        settings = source.adapter_settings()
        plugin = find_plugin(source.crm)
        if plugin is not None:
            found.extend(plugin.secret_values(settings))
        found.extend(str(value) for key, value in settings.items() if key in SECRET_KEYS and value)
    try:
        password = make_url(config.store.database).password
    except ArgumentError:
        password = None
    if password:
        found.append(str(password))
    return list(dict.fromkeys(found))


def redact(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` safe to print: secret values replaced by ``***``."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in settings.items()}
