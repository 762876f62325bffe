"""The contract controls of each sandbox: the CRM-neutral ``SandboxControls`` the adapter
contract suite drives (create, change, delete records as a CRM user, move the clock, fail
requests, read the truth back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox


class TickingControls:
    """Controls over a sandbox whose records carry whole-second stamps (Salesforce, Dataverse).

    Each mutation first moves the sandbox clock on by a second: the contract needs every change
    to carry a cursor value no reader saw yet.
    """

    def __init__(self, sandbox: SalesforceSandbox | DynamicsSandbox) -> None:
        """Controls over ``sandbox`` (started)."""
        self.sandbox = sandbox

    def _tick(self) -> None:
        self.sandbox.advance_clock(1)

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record; its id."""
        self._tick()
        return str(self.sandbox.create(object_name, dict(values)))

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record."""
        self._tick()
        self.sandbox.update(object_name, record_id, dict(values))

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record (the recycle bin or change tracking still reports it)."""
        self._tick()
        self.sandbox.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record for good."""
        self._tick()
        self.sandbox.hard_delete(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Stamp every id with one new modification instant."""
        self._tick()
        self.sandbox.set_modstamp(object_name, list(ids), self.sandbox.now())

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.sandbox.advance_clock(seconds)

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` CRM requests with ``status``."""
        self.sandbox.fail_next(count, status=status)

    def count(self, object_name: str) -> int:
        """Live records of the object."""
        return int(self.sandbox.count(object_name))

    def ids(self, object_name: str) -> list[str]:
        """Live ids of the object."""
        return list(self.sandbox.ids(object_name))

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's values, or ``None``."""
        return self.sandbox.get(object_name, record_id)


class SalesforceControls(TickingControls):
    """``SandboxControls`` for the Salesforce sandbox (deletes go to the recycle bin)."""

    sandbox: SalesforceSandbox

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        """Controls over ``sandbox`` (a started ``SalesforceSandbox``)."""
        super().__init__(sandbox)

    def expire_sessions(self) -> None:
        """Invalidate every issued session."""
        self.sandbox.expire_sessions()


class DynamicsControls(TickingControls):
    """``SandboxControls`` for the Dataverse sandbox (change tracking reports deletes)."""

    sandbox: DynamicsSandbox

    def __init__(self, sandbox: DynamicsSandbox) -> None:
        """Controls over ``sandbox`` (a started ``DynamicsSandbox``)."""
        super().__init__(sandbox)

    def expire_sessions(self) -> None:
        """Invalidate every issued access token."""
        self.sandbox.expire_tokens()


class HubSpotControls:
    """``SandboxControls`` for the HubSpot sandbox.

    Every change gets a fresh last-modified instant from the sandbox clock, which never hands
    out the same millisecond twice. Private-app tokens do not expire, so there are no sessions
    to expire.
    """

    def __init__(self, sandbox: HubSpotSandbox) -> None:
        """Controls over ``sandbox`` (a started ``HubSpotSandbox``)."""
        self.sandbox = sandbox

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record; its id."""
        return self.sandbox.create(object_name, dict(values))

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record."""
        self.sandbox.update(object_name, record_id, dict(values))

    def delete(self, object_name: str, record_id: str) -> None:
        """Archive a record (the recycle bin still lists it)."""
        self.sandbox.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record for good."""
        self.sandbox.hard_delete(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Put every id on one new last-modified instant."""
        self.sandbox.set_modstamp(object_name, list(ids))

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.sandbox.advance_clock(seconds)

    def expire_sessions(self) -> None:
        """Nothing to do: a private app's token stays valid until it is rotated."""

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` CRM requests with ``status``."""
        self.sandbox.fail_next(count, status=status)

    def count(self, object_name: str) -> int:
        """Live records of the object."""
        return self.sandbox.count(object_name)

    def ids(self, object_name: str) -> list[str]:
        """Live ids of the object."""
        return self.sandbox.ids(object_name)

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's values, or ``None``."""
        return self.sandbox.get(object_name, record_id)
