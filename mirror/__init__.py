"""prm-mirror: a local, queryable, partner-sliced mirror of a vendor's CRM, synced both ways.

Embedded use::

    from mirror import Mirror
    with Mirror.open("prm-mirror.toml") as m:
        m.sync()
"""

from mirror.api import Mirror, ObjectStatus
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
)

__all__ = [
    "AccessDenied",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "CrmError",
    "Mirror",
    "MirrorError",
    "ObjectStatus",
    "QueryError",
    "QuotaExceeded",
    "RecordError",
    "TransientError",
]
