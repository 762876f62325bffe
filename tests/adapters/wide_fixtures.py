"""Wide objects for the URL-limit tests: each sandbox's object widened with hundreds of custom
fields, enough that one query with every field is longer than the CRM's URL limit.

Real orgs get there: an Opportunity with a few hundred custom fields, a HubSpot portal whose
contacts carry hundreds of properties, a Dataverse table with most of its 1,000-odd columns in
use. The names are of a realistic length (33 to 42 characters).
"""

from __future__ import annotations

from typing import Any

from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox

SALESFORCE_WIDTH = 450
HUBSPOT_WIDTH = 400
DYNAMICS_WIDTH = 800


def salesforce_field(number: int) -> str:
    """The name of added Salesforce field ``number``."""
    return f"Partner_Program_Attribute_{number:04d}__c"


def hubspot_property(number: int) -> str:
    """The name of added HubSpot property ``number``."""
    return f"partner_program_attribute_{number:04d}"


def dynamics_column(number: int) -> str:
    """The name of added Dataverse column ``number``."""
    return f"prm_partnerprogramattributewithlongname{number:04d}"


def widen_salesforce(sandbox: Any, sobject: str, width: int = SALESFORCE_WIDTH) -> None:
    """Add ``width`` text fields to ``sobject``."""
    for number in range(width):
        sandbox.add_field(sobject, salesforce_field(number), "string", length=40)


def widen_hubspot(sandbox: HubSpotSandbox, object_type: str, width: int = HUBSPOT_WIDTH) -> None:
    """Add ``width`` text properties to ``object_type``."""
    for number in range(width):
        sandbox.add_property(object_type, hubspot_property(number), "string", fieldType="text")


def widen_dynamics(sandbox: DynamicsSandbox, table: str, width: int = DYNAMICS_WIDTH) -> None:
    """Add ``width`` text columns to ``table``."""
    sandbox.add_columns(table, [dynamics_column(n) for n in range(width)], "String", 40)


def wide_values(name: Any, tag: str, every: int, width: int) -> dict[str, str]:
    """Values for every ``every``-th added field (``name(number)``), tagged with ``tag``."""
    return {name(number): f"{tag}-{number}" for number in range(0, width, every)}
