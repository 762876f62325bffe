"""The adapter plugins, registered as ``prm_mirror.adapters`` entry points.

The engine finds adapters through these (``Mirror.open`` never imports a CRM client itself):
each plugin validates a source's settings with its CRM's settings model (every problem at
once, when the config is loaded), names the secrets among them and builds the ``CrmAdapter``.
A plugin is also callable as the factory ``(source, settings) -> CrmAdapter``.
"""

from __future__ import annotations

from adapters._kit.settings import SettingsPlugin
from adapters.dynamics.settings import DynamicsSettings
from adapters.hubspot.settings import HubSpotSettings
from adapters.salesforce.settings import SalesforceSettings
from mirror.adapter import CrmAdapter


def _salesforce_adapter(source: str, settings: SalesforceSettings) -> CrmAdapter:
    from adapters.salesforce.adapter import SalesforceAdapter

    adapter: CrmAdapter = SalesforceAdapter(settings, source=source)
    return adapter


def _hubspot_adapter(source: str, settings: HubSpotSettings) -> CrmAdapter:
    from adapters.hubspot.adapter import HubSpotAdapter

    adapter: CrmAdapter = HubSpotAdapter(settings, source=source)
    return adapter


def _dynamics_adapter(source: str, settings: DynamicsSettings) -> CrmAdapter:
    from adapters.dynamics.adapter import DynamicsAdapter

    adapter: CrmAdapter = DynamicsAdapter(settings, source=source)
    return adapter


salesforce = SettingsPlugin(SalesforceSettings, _salesforce_adapter)
"""A Salesforce adapter on simple-salesforce, from a ``[sources.<name>]`` table."""

hubspot = SettingsPlugin(HubSpotSettings, _hubspot_adapter)
"""A HubSpot adapter on hubspot-api-client, from a ``[sources.<name>]`` table."""

dynamics = SettingsPlugin(DynamicsSettings, _dynamics_adapter)
"""A Dynamics 365 (Dataverse) adapter on msal + requests, from a ``[sources.<name>]`` table."""
