"""Registering the mirror's webhook subscriptions in a HubSpot app, with hubspot-api-client's
Webhooks API v3 client (``client.webhooks``: the developer account's API key as ``hapikey``).

``mirror_subscriptions`` lists what the mirror needs per object: ``creation``, ``deletion``,
``merge``, ``restore``, ``associationChange`` and one ``propertyChange`` per mirrored property
(HubSpot's legacy subscriptions take one property each; custom objects use the generic
``object.*`` form with their ``objectTypeId``). ``register_webhooks`` points the app at the
daemon's URL and creates the missing subscriptions, active; it leaves others alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hubspot import HubSpot
from hubspot.webhooks import (
    SettingsChangeRequest,
    SubscriptionCreateRequest,
    SubscriptionPatchRequest,
    ThrottlingSettings,
)

from adapters._kit.settings import reveal
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.webhooks import LEGACY_OBJECTS
from mirror.errors import ConfigError

RECORD_KINDS = ("creation", "deletion", "merge", "restore", "associationChange")


def mirror_subscriptions(
    properties: Mapping[str, Sequence[str]], type_ids: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The subscriptions that tell the mirror of every change of ``properties``' objects
    (object name -> mirrored property names); ``type_ids`` gives custom objects'
    ``objectTypeId``."""
    legacy = {name: scope for scope, name in LEGACY_OBJECTS.items()}
    wanted: list[dict[str, Any]] = []
    for name, props in properties.items():
        scope = legacy.get(name)
        base: dict[str, Any] = {}
        if scope is None:
            type_id = (type_ids or {}).get(name)
            if type_id is None:
                raise ConfigError(f"hubspot webhooks: no objectTypeId for custom object {name}")
            scope, base = "object", {"objectTypeId": type_id}
        kinds = [k for k in RECORD_KINDS if not (name == "products" and k == "associationChange")]
        wanted += [{"eventType": f"{scope}.{kind}", **base} for kind in kinds]
        wanted += [
            {"eventType": f"{scope}.propertyChange", "propertyName": prop, **base} for prop in props
        ]
    return wanted


def register_webhooks(
    settings: HubSpotSettings,
    target_url: str,
    subscriptions: Sequence[Mapping[str, Any]],
    max_concurrent_requests: int = 10,
) -> list[str]:
    """Set the app's target URL and concurrency limit, create the ``subscriptions`` it lacks
    (active) and return the ids of every wanted subscription."""
    key = reveal(settings.developer_api_key)
    if settings.app_id is None or not key:
        raise ConfigError(
            "hubspot.app_id and hubspot.developer_api_key are needed to register webhooks"
        )
    api = HubSpot(api_key=key, host=settings.base_url).webhooks
    api.settings_api.configure(
        settings.app_id,
        SettingsChangeRequest(
            target_url=target_url,
            throttling=ThrottlingSettings(max_concurrent_requests=max_concurrent_requests),
        ),
    )
    existing = {
        (s.event_type, s.property_name, s.object_type_id): s
        for s in api.subscriptions_api.get_all(settings.app_id).results
    }
    ids = []
    for wanted in subscriptions:
        triple = (wanted["eventType"], wanted.get("propertyName"), wanted.get("objectTypeId"))
        found = existing.get(triple)
        if found is None:
            found = api.subscriptions_api.create(
                settings.app_id,
                SubscriptionCreateRequest(
                    event_type=triple[0],
                    property_name=triple[1],
                    object_type_id=triple[2],
                    active=True,
                ),
            )
        elif not found.active:
            patch = SubscriptionPatchRequest(active=True)
            found = api.subscriptions_api.update(found.id, settings.app_id, patch)
        ids.append(str(found.id))
    return ids
