"""Adapter factories, registered as ``prm_mirror.adapters`` entry points.

The engine finds adapters through these (``Mirror.open`` never imports a CRM client itself):
each factory takes the source's name and its config settings and returns a ``CrmAdapter``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mirror.adapter import CrmAdapter


def salesforce(source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    """A Salesforce adapter on simple-salesforce, from a ``[sources.<name>]`` table."""
    from adapters.salesforce.adapter import SalesforceAdapter
    from adapters.salesforce.client import SalesforceSettings

    known = {f.name for f in dataclasses.fields(SalesforceSettings)}
    chosen = {k: v for k, v in settings.items() if k in known and v is not None}
    adapter: CrmAdapter = SalesforceAdapter(SalesforceSettings(**chosen), source=source)
    return adapter


def hubspot(source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    """A HubSpot adapter on hubspot-api-client, from a ``[sources.<name>]`` table."""
    from adapters.hubspot.adapter import HubSpotAdapter, HubSpotSettings

    adapter: CrmAdapter = HubSpotAdapter(_settings(HubSpotSettings, settings), source=source)
    return adapter


def dynamics(source: str, settings: Mapping[str, Any]) -> CrmAdapter:
    """A Dynamics 365 (Dataverse) adapter on msal + requests, from a ``[sources.<name>]``."""
    from adapters.dynamics.adapter import DynamicsAdapter, DynamicsSettings

    adapter: CrmAdapter = DynamicsAdapter(_settings(DynamicsSettings, settings), source=source)
    return adapter


def _settings(kind: Any, settings: Mapping[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in settings.items() if k in known and v is not None})
