"""prm-mirror: a local, queryable, partner-sliced mirror of a vendor's CRM, synced both ways.

Embedded use::

    from mirror import Mirror
    with Mirror.open("prm-mirror.toml") as m:
        m.sync()

Everything an application, the CLI or a demo needs is importable from here: ``Mirror`` and
what its operations return (``RunResult``, ``PageOutcome``, ``PushResult``, ``ObjectStatus``,
``PartnerView``, the ``PartnerUser`` a sign-in name belongs to, and the change feed's
``Change`` with its ``ChangeOrigin``), the config (``MirrorConfig``, ``load_config``,
``parse_config``, ``secret_values``), the value types adapters share (``ObjectSpec``,
``FieldType``, ``Page``), the errors (all ``MirrorError``), the daemon and its checks
(``Daemon``, ``check_config``, ``cron_problems``, ``configure_logging``), secret redaction
(``redacted``, ``register_secrets``), the packaged data (``data_dir``), ``build_adapter`` and
``MAX_PAGE``, the most rows one partner query returns. The modules below this package are the
engine's own and may change.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mirror.api import Mirror, ObjectStatus, build_adapter
from mirror.config import MirrorConfig, load_config, parse_config, secret_values
from mirror.errors import (
    AccessDenied,
    AuthError,
    ConfigError,
    ConflictError,
    CrmError,
    MirrorError,
    QueryError,
    QuotaExceeded,
    RecordError,
    TransientError,
    ValidationError,
)
from mirror.logs import configure_logging
from mirror.portal.users import PartnerUser
from mirror.portal.view import MAX_PAGE, PartnerView
from mirror.pull.pages import PageOutcome
from mirror.pull.sync import RunResult
from mirror.push.writeback import PushResult
from mirror.redaction import redacted
from mirror.redaction import register as register_secrets
from mirror.resources import data_dir
from mirror.types import Change, ChangeOrigin, FieldType, ObjectSpec, Page

if TYPE_CHECKING:
    from mirror.config_check import check_config, cron_problems
    from mirror.daemon import Daemon

# imported on first use: they bring the scheduler and the metrics server, which a plain
# embedding never needs
_LAZY = {
    "Daemon": "mirror.daemon",
    "check_config": "mirror.config_check",
    "cron_problems": "mirror.config_check",
}

__all__ = [
    "MAX_PAGE",
    "AccessDenied",
    "AuthError",
    "Change",
    "ChangeOrigin",
    "ConfigError",
    "ConflictError",
    "CrmError",
    "Daemon",
    "FieldType",
    "Mirror",
    "MirrorConfig",
    "MirrorError",
    "ObjectSpec",
    "ObjectStatus",
    "Page",
    "PageOutcome",
    "PartnerUser",
    "PartnerView",
    "PushResult",
    "QueryError",
    "QuotaExceeded",
    "RecordError",
    "RunResult",
    "TransientError",
    "ValidationError",
    "build_adapter",
    "check_config",
    "configure_logging",
    "cron_problems",
    "data_dir",
    "load_config",
    "parse_config",
    "redacted",
    "register_secrets",
    "secret_values",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mirror' has no attribute {name!r}")
