"""The partner's deal registrations: the form (field-level errors, from the form's own checks
and from the engine's), the verdict the partner may see, and its registrations' status."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, render_template

from mirror import AccessDenied, MirrorError, PartnerView
from prm_portal.auth import current_view, partner_required
from prm_portal.forms import RegistrationForm

REGISTRATION = "Deal_Registration__c"
REJECTION_REASON = "Rejection_Reason__c"
blueprint = Blueprint("registrations", __name__)
VERDICTS = {
    "clear": "Clear: no other deal names this customer.",
    "review": "In review: your channel manager will look at it before deciding.",
}


@blueprint.route("/registrations", methods=["GET", "POST"])
@partner_required
def registrations() -> Any:
    """Register a deal, and list the partner's registrations."""
    view = current_view()
    form = RegistrationForm()
    receipt = None
    refusal = None
    if form.validate_on_submit():
        try:
            receipt = view.register_deal(form.request())
        except AccessDenied as exc:
            refusal = str(exc)
        except MirrorError as exc:
            _attach(form, exc)
    return render_template(
        "registrations.html",
        form=form,
        receipt=receipt,
        verdict_text=VERDICTS.get(str(receipt.verdict)) if receipt else None,
        refusal=refusal,
        registrations=view.my_registrations(),
        reasons=_rejection_reasons(view),
        verdicts=VERDICTS,
    )


def _rejection_reasons(view: PartnerView) -> dict[str, str]:
    """The reasons the channel manager gave for the partner's rejected registrations."""
    try:
        rows = view.select(
            REGISTRATION,
            where={REJECTION_REASON: ("is_null", False)},
            fields=["Id", REJECTION_REASON],
            limit=1000,
        )
    except MirrorError:
        return {}
    return {row["Id"]: row[REJECTION_REASON] for row in rows}


def _attach(form: RegistrationForm, error: MirrorError) -> None:
    """Each ``field: problem`` of the engine's message on its field (else on the form)."""
    text = str(error).removeprefix("deal registration: ")
    attached = False
    for part in text.split("; "):
        name, _, problem = part.partition(": ")
        field = getattr(form, name.split(".")[0], None) if re.fullmatch(r"[\w.]+", name) else None
        if field is not None and problem and hasattr(field, "errors"):
            field.errors = [*field.errors, problem]
            attached = True
    if not attached:
        form.form_errors.append(str(error))
