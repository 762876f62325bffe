"""The partner's pages: its deals, accounts and contacts, a deal with its line items and
contacts, the deal edit and the new contact, and its writes with their status.

Every handler reads and writes through the session's ``PartnerView`` (``current_view``): a
record outside the slice is ``AccessDenied``, which the app answers with the same 404 as a
record that does not exist, so a partner learns nothing of another partner's records.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from mirror import MirrorError, ValidationError
from prm_portal import listing
from prm_portal.auth import current_view, partner_required
from prm_portal.forms import STAGES, ContactForm, DealEditForm
from prm_portal.state import portal_state
from prm_portal.write_status import partner_writes

blueprint = Blueprint("partner", __name__)
DEAL_FIELDS = ("StageName", "Amount", "CloseDate", "NextStep")


def _list_page(name: str) -> Any:
    spec = listing.LISTS[name]
    query = listing.parse(spec, request.args)
    page_size = portal_state().settings.page_size
    rows, total = listing.fetch(current_view(), spec, query, page_size)
    pages = max(1, -(-total // page_size))
    return render_template(
        "list.html",
        name=name,
        spec=spec,
        query=query,
        rows=rows,
        total=total,
        more=total >= listing.COUNT_CAP,
        pages=pages,
        account_names=_account_names(rows) if "AccountId" in spec.columns else {},
        stages=STAGES,
    )


@blueprint.route("/deals")
@partner_required
def deals() -> Any:
    """The partner's deals."""
    return _list_page("deals")


@blueprint.route("/accounts")
@partner_required
def accounts() -> Any:
    """The partner's accounts (its own and its end customers')."""
    return _list_page("accounts")


@blueprint.route("/contacts")
@partner_required
def contacts() -> Any:
    """The contacts at the partner's accounts."""
    return _list_page("contacts")


@blueprint.route("/deals/<deal_id>", methods=["GET", "POST"])
@partner_required
def deal(deal_id: str) -> Any:
    """One deal: its fields, line items, contacts and writes; POST changes it."""
    view = current_view()
    record = view.get("Opportunity", deal_id)
    form = DealEditForm(data={f: record.get(f) for f in DEAL_FIELDS})
    if form.StageName.data not in STAGES and form.StageName.data:
        form.StageName.choices = [*form.StageName.choices, SelectChoice(record["StageName"])]
    if request.method == "POST" and form.validate_on_submit():
        changes = {
            "StageName": form.StageName.data,
            "Amount": float(form.Amount.data) if form.Amount.data is not None else None,
            "CloseDate": form.CloseDate.data,
            "NextStep": form.NextStep.data or None,
        }
        changed = {k: v for k, v in changes.items() if _differs(record.get(k), v)}
        if changed:
            try:
                view.update("Opportunity", record["Id"], changed)
                flash("Saved; queued for the CRM.", "ok")
                return redirect(url_for("partner.deal", deal_id=record["Id"]))
            except MirrorError as exc:
                _attach(form, exc)
        else:
            flash("Nothing changed.", "info")
    elif request.method == "POST":
        flash("The deal was not saved: see the fields marked below.", "error")
    return render_template(
        "deal.html",
        deal=record,
        form=form,
        account=_optional(view, "Account", record.get("AccountId")),
        items=view.select("OpportunityLineItem", where={"OpportunityId": record["Id"]}, limit=200),
        contacts=view.select("Contact", where={"AccountId": record.get("AccountId")}, limit=200)
        if record.get("AccountId")
        else [],
        writes=partner_writes(view, record_id=record["Id"], limit=10),
    )


@blueprint.route("/contacts/new", methods=["GET", "POST"])
@partner_required
def new_contact() -> Any:
    """Create a contact at one of the partner's accounts."""
    view = current_view()
    accounts = view.select("Account", fields=["Id", "Name"], order_by="Name", limit=1000)
    form = ContactForm(AccountId=request.args.get("account", ""))
    form.AccountId.choices = [SelectChoice(a["Id"], a["Name"] or a["Id"]) for a in accounts]
    if form.validate_on_submit():
        values = {
            name: getattr(form, name).data or None
            for name in ("AccountId", "FirstName", "LastName", "Email", "Phone", "Title")
        }
        try:
            view.create("Contact", {k: v for k, v in values.items() if v is not None})
            flash("Contact created; queued for the CRM.", "ok")
            return redirect(url_for("partner.writes"))
        except MirrorError as exc:
            _attach(form, exc)
    return render_template("contact_new.html", form=form)


@blueprint.route("/writes")
@partner_required
def writes() -> Any:
    """The partner's writes and where each stands."""
    return render_template("writes.html", writes=partner_writes(current_view(), limit=100))


def _account_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    ids = sorted({r["AccountId"] for r in rows if r.get("AccountId")})
    if not ids:
        return {}
    found = current_view().select(
        "Account", where={"Id": ("in", ids)}, fields=["Id", "Name"], limit=len(ids)
    )
    return {a["Id"]: a["Name"] for a in found}


def _optional(view: Any, name: str, record_id: str | None) -> dict[str, Any] | None:
    if not record_id:
        return None
    try:
        found: dict[str, Any] = view.get(name, record_id)
        return found
    except MirrorError:
        return None


def _differs(before: Any, after: Any) -> bool:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return abs(before - after) > 1e-9
    return bool(before != after)


def _attach(form: Any, error: MirrorError) -> None:
    """Each of the engine's problems on its field, else the message above the form."""
    problems = error.problems if isinstance(error, ValidationError) else []
    fields = [(form[name], problem) for name, problem in problems if name in form]
    for field, problem in fields:
        field.errors = [*field.errors, problem]
    if not fields:
        flash(str(error), "error")
