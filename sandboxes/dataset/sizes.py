"""How many records of each kind a generated dataset of a given size holds."""

from __future__ import annotations

from dataclasses import dataclass

SIZES = {"tiny": 50, "small": 500, "medium": 10_000, "large": 1_000_000}


@dataclass(frozen=True)
class Counts:
    """How many records of each kind a dataset holds."""

    opportunities: int
    partners: int
    customers: int
    contacts: int
    internal_users: int
    leads: int
    products: int
    deal_registrations: int

    @property
    def users(self) -> int:
        """Internal users plus one partner user per partner."""
        return self.internal_users + self.partners

    @classmethod
    def for_size(cls, size: str | int) -> Counts:
        """The counts for a named size or a number of opportunities."""
        if isinstance(size, str):
            if size not in SIZES:
                raise ValueError(f"unknown size {size!r}; use one of {sorted(SIZES)} or an int")
            size = SIZES[size]
        if size < 0:
            raise ValueError("size must not be negative")
        partners = min(max(size // 50, 3), 2_000)
        customers = size // 6 + 10
        return cls(
            opportunities=size,
            partners=partners,
            customers=customers,
            contacts=3 * partners + 2 * customers,
            internal_users=min(max(size // 200, 5), 500),
            leads=size // 5 + 5,
            products=min(max(size // 100, 10), 500),
            deal_registrations=size // 10 + 3,
        )
