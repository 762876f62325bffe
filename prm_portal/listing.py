"""The partner's lists (deals, accounts, contacts): which columns each shows, and how a
list's query string (search, filters, sort, page) becomes a ``PartnerView.select``.

Only the names below ever reach the view: an unknown sort or filter in the query string is
ignored, and every value goes to the view, which keeps the query inside the slice and refuses
a hidden field. A forked portal changes these tables to its CRM's field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirror import PartnerView

# a list counts its matches up to this many (shown as "10000+"): a filtered count reads every
# match, so a partner with a huge slice does not pay for all of them on each page
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Filter:
    """One filter of a list: its query-string name, field, operator and how it is shown."""

    name: str
    field: str
    operator: str
    label: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListSpec:
    """One list page: its object, columns, searched field, filters and sortable columns."""

    object: str
    title: str
    columns: tuple[str, ...]
    search: str
    filters: tuple[Filter, ...] = ()
    sortable: tuple[str, ...] = ()
    default_sort: str = "Name"
    labels: Mapping[str, str] = field(default_factory=dict)
    key: str = "Id"


LISTS = {
    "deals": ListSpec(
        "Opportunity",
        "Deals",
        ("Name", "StageName", "Amount", "CloseDate", "NextStep"),
        "Name",
        (
            Filter("stage", "StageName", "=", "Stage"),
            Filter("state", "IsClosed", "=", "Open or closed", ("open", "closed")),
            Filter("min_amount", "Amount", ">=", "Amount at least"),
        ),
        ("Name", "StageName", "Amount", "CloseDate"),
        "CloseDate",
        {"StageName": "Stage", "CloseDate": "Close date", "NextStep": "Next step"},
    ),
    "accounts": ListSpec(
        "Account",
        "Accounts",
        ("Name", "Type", "Industry", "BillingCity", "BillingCountry", "Website"),
        "Name",
        (
            Filter("industry", "Industry", "=", "Industry"),
            Filter("country", "BillingCountry", "=", "Country"),
        ),
        ("Name", "Industry", "BillingCountry"),
        labels={"BillingCity": "City", "BillingCountry": "Country"},
    ),
    "contacts": ListSpec(
        "Contact",
        "Contacts",
        ("Name", "Title", "Email", "Phone", "AccountId"),
        "Name",
        (Filter("account", "AccountId", "=", "Account id"),),
        ("Name", "Title", "Email"),
        labels={"AccountId": "Account"},
    ),
}


@dataclass(frozen=True)
class ListQuery:
    """A list's query string, reduced to what the list knows."""

    search: str
    filters: dict[str, str]
    sort: str
    page: int

    def where(self, spec: ListSpec) -> dict[str, Any]:
        """The ``where`` of ``PartnerView.select`` for this query."""
        where: dict[str, list[tuple[str, Any]]] = {}
        if self.search:
            pattern = f"%{self.search}%"
            where.setdefault(spec.search, []).append(("like", pattern))
        for one in spec.filters:
            value = self.filters.get(one.name)
            if value:
                where.setdefault(one.field, []).append((one.operator, _value(one, value)))
        return dict(where)

    def args(self, **changes: Any) -> dict[str, Any]:
        """This query's arguments for ``url_for``, with ``changes`` applied."""
        args: dict[str, Any] = {"q": self.search, "sort": self.sort, "page": self.page}
        args.update(self.filters)
        args.update(changes)
        return {k: v for k, v in args.items() if v not in ("", None)}


def parse(spec: ListSpec, query: Mapping[str, str]) -> ListQuery:
    """The list query of a request's query string (anything unknown left out)."""
    sort = query.get("sort", spec.default_sort)
    if sort.lstrip("-") not in spec.sortable:
        sort = spec.default_sort
    try:
        page = max(1, min(int(query.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    filters = {f.name: query.get(f.name, "").strip()[:255] for f in spec.filters}
    return ListQuery(query.get("q", "").strip()[:255], filters, sort, page)


def fetch(
    view: PartnerView, spec: ListSpec, query: ListQuery, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the list and how many records match in all (at most ``COUNT_CAP``)."""
    where = query.where(spec)
    # only the columns shown (those the partner sees): a sort carries every selected field
    shown = set(view.fields(spec.object))
    fields = [name for name in dict.fromkeys((spec.key, *spec.columns)) if name in shown]
    rows = view.select(
        spec.object,
        where=where,
        fields=fields,
        order_by=query.sort,
        limit=page_size,
        offset=(query.page - 1) * page_size,
    )
    return rows, view.count(spec.object, where=where, at_most=COUNT_CAP)


def _value(one: Filter, value: str) -> Any:
    if one.choices == ("open", "closed"):
        return value == "closed"
    if one.operator in (">=", "<=", ">", "<"):
        try:
            return float(value)
        except ValueError:
            return value
    return value
