"""The body of a Dataverse webhook post: the ``RemoteExecutionContext`` serialised as JSON.

The shape follows the documented example (``use-webhooks``): DataContract JSON with
``InputParameters``/``OutputParameters``/images as lists of ``{"key", "value"}`` pairs, an
``Entity`` as ``{"__type": "Entity:...", "Attributes": [...], "Id", "LogicalName", ...}``,
references as ``EntityReference``, choices as ``OptionSetValue``, money as ``Money`` and dates
as ``/Date(<epoch ms>)/``. Per message:

- ``Create``: ``Target`` is the new row (every column it was created with, stamps included);
  ``OutputParameters`` holds ``id``.
- ``Update``: ``Target`` holds the columns the write set (with the primary id and the stamps).
- ``Delete``: ``Target`` is an ``EntityReference``.
- ``Merge`` (registered on the surviving row's table): ``Target`` is an ``EntityReference`` to
  the survivor, ``SubordinateId`` the merged row's id, ``UpdateContent`` an ``Entity``,
  ``PerformParentingChecks`` a boolean; ``PrimaryEntityId`` is the survivor.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sandboxes.dynamics.schema import INTEGRATION_USER_ID, Entity
from sandboxes.dynamics.store import RowChange
from sandboxes.dynamics.webhook_registry import Step

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
MESSAGE_OF_OP = {"create": "Create", "update": "Update", "touch": "Update", "delete": "Delete",
                 "hard_delete": "Delete", "merge": "Merge"}  # fmt: skip
BUSINESS_UNIT_ID = "e2b9dd85-e89e-e711-8122-000d3aa2331c"
SIZE_LIMIT = 256 * 1024
"""Bytes of body past which Dataverse strips the context (``x-ms-dynamics-msg-size-exceeded``)."""
_STRIPPED = ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages")


def wcf_date(epoch_ms: int) -> str:
    """``/Date(<ms>)/``, the DataContract JSON form of a date."""
    return f"/Date({epoch_ms})/"


def entity_reference(table: str, record_id: str) -> dict[str, Any]:
    """An ``EntityReference`` value."""
    return {"__type": f"EntityReference:{CONTRACTS}", "Id": record_id, "KeyAttributes": [],
            "LogicalName": table, "Name": None, "RowVersion": None}  # fmt: skip


def entity_value(entity: Entity, record_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """An ``Entity`` value holding the stored ``values`` of a row of ``entity``."""
    attributes = [{"key": entity.primary_id, "value": record_id}]
    for name, value in values.items():
        attribute = entity.by_name.get(name)
        if attribute is None or name == entity.primary_id:
            continue
        attributes.append({"key": name, "value": _value(entity, name, value, values)})
    return {"__type": f"Entity:{CONTRACTS}", "Attributes": attributes, "EntityState": None,
            "FormattedValues": [], "Id": record_id, "KeyAttributes": [],
            "LogicalName": entity.name, "RelatedEntities": [], "RowVersion": None}  # fmt: skip


def _value(entity: Entity, name: str, value: Any, row: Mapping[str, Any]) -> Any:
    attribute = entity.by_name[name]
    if value is None:
        return None
    if attribute.is_lookup:
        target = row.get(f"{name}type") or (attribute.targets[0] if attribute.targets else "")
        return entity_reference(str(target), str(value))
    if attribute.type in ("Picklist", "State", "Status"):
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if attribute.type == "Money":
        return {"__type": f"Money:{CONTRACTS}", "Value": value}
    if attribute.type == "DateTime":
        if isinstance(value, int | float):
            return wcf_date(int(value) * 1000)
        moment = datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
        return wcf_date(int(moment.timestamp()) * 1000)
    return value


def execution_context(
    step: Step,
    change: RowChange,
    *,
    organization: tuple[str, str],
    operation_id: str,
    correlation_id: str,
) -> dict[str, Any]:
    """The ``RemoteExecutionContext`` a step posts for one committed change;
    ``organization`` is ``(id, name)``."""
    message = MESSAGE_OF_OP[change.op]
    entity, record_id = change.entity, change.record_id
    primary_id = record_id
    outputs: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]]
    if message == "Create":
        inputs = [{"key": "Target", "value": entity_value(entity, record_id, change.values)}]
        outputs = [{"key": "id", "value": record_id}]
    elif message == "Update":
        inputs = [{"key": "Target", "value": entity_value(entity, record_id, change.values)}]
    elif message == "Delete":
        inputs = [{"key": "Target", "value": entity_reference(entity.name, record_id)}]
    else:
        extra = change.extra or {}
        primary_id = str(extra["target"])
        inputs = [
            {"key": "Target", "value": entity_reference(entity.name, primary_id)},
            {"key": "SubordinateId", "value": record_id},
            {"key": "UpdateContent", "value": entity_value(entity, primary_id, {})},
            {"key": "PerformParentingChecks", "value": bool(extra.get("parenting_checks"))},
        ]
    organization_id, organization_name = organization
    return {
        "BusinessUnitId": BUSINESS_UNIT_ID,
        "CorrelationId": correlation_id,
        "Depth": 1,
        "InitiatingUserId": INTEGRATION_USER_ID,
        "InputParameters": inputs,
        "IsExecutingOffline": False,
        "IsInTransaction": step.mode == 0,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": step.mode,
        "OperationCreatedOn": wcf_date(change.at * 1000),
        "OperationId": operation_id,
        "OrganizationId": organization_id,
        "OrganizationName": organization_name,
        "OutputParameters": outputs,
        "OwningExtension": entity_reference("sdkmessageprocessingstep", step.step_id),
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": primary_id,
        "PrimaryEntityName": entity.name,
        "RequestId": str(uuid.uuid4()),
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": step.stage,
        "UserId": INTEGRATION_USER_ID,
    }


def fit(context: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bool]:
    """``context`` as it is sent: past 256 KB without ``ParentContext``, ``InputParameters``
    and the images (and ``True``: the ``x-ms-dynamics-msg-size-exceeded`` header goes with it)."""
    if len(body) <= SIZE_LIMIT:
        return context, False
    return {k: ([] if k != "ParentContext" else None) if k in _STRIPPED else v
            for k, v in context.items()}, True  # fmt: skip
