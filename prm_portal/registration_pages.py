"""The partner's deal registrations: the form (field-level errors, from the form's own checks
and from the engine's), the verdict the partner may see, and its registrations' status."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from mirror import AccessDenied, MirrorError, ValidationError
from prm_portal.auth import current_view, partner_required
from prm_portal.forms import RegistrationForm

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
        verdicts=VERDICTS,
    )


def _attach(form: RegistrationForm, error: MirrorError) -> None:
    """Each of the engine's problems on its field (else the message above the form)."""
    problems = error.problems if isinstance(error, ValidationError) else []
    attached = False
    for name, problem in problems:
        field = name.split(".")[0]
        if field in form:
            form[field].errors = [*form[field].errors, problem]
            attached = True
    if not attached:
        form.form_errors.append(str(error))
