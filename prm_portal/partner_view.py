"""What the portal asks of a partner's view of the mirror (``Mirror.as_partner``), as a
protocol: the portal's pages use exactly these calls, and nothing else of the engine, to read
and write a partner's slice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class FeedBatch(Protocol):
    """A page of the partner's change feed and the cursor after it."""

    @property
    def changes(self) -> list[dict[str, Any]]:
        """The changes, oldest first."""

    @property
    def cursor(self) -> int:
        """Where the next page starts."""


class Receipt(Protocol):
    """What a partner is told about a registration it submitted."""

    @property
    def registration_id(self) -> str:
        """The registration's id (local until the CRM has it)."""

    @property
    def status(self) -> str:
        """Its status, e.g. ``Submitted``."""

    @property
    def verdict(self) -> Any:
        """``clear`` or ``review``."""


class PartnerSlice(Protocol):
    """One partner's (or partner user's) slice: reads, writes, its feed and registrations."""

    @property
    def partner_id(self) -> str:
        """The partner whose slice it is."""

    @property
    def role(self) -> str:
        """``admin`` (the whole slice) or ``rep`` (the user's own records)."""

    def select(
        self,
        object_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict]:
        """Records of the slice, filtered, ordered and paged."""

    def count(self, object_name: str, *, where: Mapping[str, Any] | None = None) -> int:
        """How many records of the slice match."""

    def get(self, object_name: str, record_id: str, fields: Sequence[str] | None = None) -> dict:
        """One record of the slice (``AccessDenied`` outside it)."""

    def update(self, object_name: str, record_id: str, changes: Mapping[str, Any]) -> dict:
        """Change writable fields of a record of the slice."""

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record in the slice; its local id."""

    def writes(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The partner's writes on their way to the CRM."""

    def changes(self, since: int = 0, limit: int = 500) -> FeedBatch:
        """What changed in the slice after ``since``."""

    def register_deal(self, request: Mapping[str, Any]) -> Receipt:
        """Register a deal; its receipt."""

    def my_registrations(self) -> list[dict[str, Any]]:
        """The partner's registrations with their status and verdict."""
