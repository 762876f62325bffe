"""``prm-mirror check``: everything a config can get wrong, found before a run fails on it.

The check opens no store (so it creates no SQLite file). It validates what needs no CRM (the
cron expressions, each source's CRM settings as its adapter plugin sees them, its schema and
slice rules), then, per source whose settings are usable and that logs in, each
configured object and every object and field the slice rules name against the CRM's describe.
Every problem is listed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apscheduler.triggers.cron import CronTrigger

from mirror.adapter import CrmAdapter, StreamListener, WebhookReceiver
from mirror.config import MirrorConfig, SourceConfig
from mirror.errors import ConfigError, MirrorError
from mirror.registry import find_plugin, unknown_crm
from mirror.schema import apply_schema, load_crm_schema
from mirror.visibility.rule_check import validate_rules
from mirror.visibility.rules import VisibilityRules, merge_settings, parse_rules

AdapterFactory = Callable[[str, SourceConfig], CrmAdapter]


@dataclass
class CheckReport:
    """What ``check_config`` found: config problems, and per source whether it logged in."""

    problems: list[str] = field(default_factory=list)
    logins: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem found and every source logged in."""
        return not self.problems and all(error is None for error in self.logins.values())


def check_config(config: MirrorConfig, adapter_of: AdapterFactory) -> CheckReport:
    """Check ``config`` (``adapter_of(name, settings)`` builds a source's adapter)."""
    report = CheckReport()
    report.problems += cron_problems(config)
    for name, settings in config.sources.items():
        _check_source(report, config, name, settings, adapter_of)
    return report


def cron_problems(config: MirrorConfig) -> list[str]:
    """The ``[daemon]`` crontab expressions APScheduler would refuse."""
    problems = []
    for key in ("sweep_cron", "audit_cron"):
        expression = getattr(config.daemon, key)
        try:
            CronTrigger.from_crontab(expression, "UTC")
        except ValueError as exc:
            problems.append(f"daemon.{key}: {expression!r} is not a crontab expression ({exc})")
    return problems


def _check_source(
    report: CheckReport,
    config: MirrorConfig,
    name: str,
    settings: SourceConfig,
    adapter_of: AdapterFactory,
) -> None:
    where = f"sources.{name}"
    plugin = find_plugin(settings.crm)
    if plugin is None:
        report.problems.append(f"{where}.crm: {unknown_crm(settings.crm)}")
        return
    settings_problems = plugin.validate_settings(settings.adapter_settings())
    report.problems += [f"{where}: {p}" for p in settings_problems]
    try:
        schema = load_crm_schema(settings.crm, config.schemas_dir)
    except ConfigError as exc:
        report.problems += [f"{where}: {p}" for p in exc.problems]
        return
    raw = merge_settings(
        {k: schema.raw.get(k, {}) for k in ("partners", "partner_users", "slices", "fields")},
        settings.visibility,
    )
    rules: VisibilityRules | None = None
    try:
        rules = parse_rules(name, raw)
    except ConfigError as exc:
        report.problems += [f"{where}.visibility: {p}" for p in exc.problems]
    if settings_problems:
        return
    try:
        adapter = adapter_of(name, settings)
        adapter.check()
    except ConfigError as exc:
        report.problems += [f"{where}: {p}" for p in exc.problems]
        return
    except MirrorError as exc:
        report.logins[name] = str(exc)
        return
    report.logins[name] = None
    report.problems += stream_problems(config, name, settings, adapter)
    objects = list(settings.objects or schema.objects)
    named = sorted(rules.named_objects()) if rules else []
    fields_of: dict[str, frozenset[str]] = {}
    for object_name in dict.fromkeys([*objects, *named]):
        try:
            spec = apply_schema(adapter.describe(object_name), schema)
        except MirrorError as exc:
            if object_name in objects:
                report.problems.append(f"{where}.objects: {object_name!r}: {exc}")
            continue
        fields_of[object_name] = frozenset(spec.field_names)
    if rules is not None:
        missing = set(objects) - set(fields_of)
        known = {*objects, *schema.objects, *schema.overrides} - missing
        try:
            validate_rules(rules, fields_of, known)
        except ConfigError as exc:
            report.problems += [f"{where}.visibility: {p}" for p in exc.problems]


def stream_problems(
    config: MirrorConfig, name: str, settings: SourceConfig, adapter: CrmAdapter
) -> list[str]:
    """What keeps ``name``'s change stream (``stream = true``) from running: an adapter with
    no stream, a webhook stream with no endpoint to post to, and what the adapter's own
    ``stream_problems()`` names, when it has one (a webhook secret not set, with which every
    delivery would be refused and polled for)."""
    if not settings.stream:
        return []
    own = getattr(adapter, "stream_problems", None)
    found = [f"sources.{name}.{problem}" for problem in own()] if callable(own) else []
    if isinstance(adapter, WebhookReceiver):
        if config.daemon.webhook_port:
            return found
        return [
            f"daemon.webhook_port: 0, but sources.{name} receives its stream by webhook "
            "(set a port, or stream = false)",
            *found,
        ]
    if isinstance(adapter, StreamListener):
        return []
    return [
        f"sources.{name}.stream: the {settings.crm} adapter has no change stream "
        "(set stream = false)"
    ]
