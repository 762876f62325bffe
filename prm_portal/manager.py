"""The channel manager's pages, read and changed through the ``Mirror``: deal registrations
with their matches (approve, reject with a reason), open conflicts (take the CRM's value, the
portal's, or one typed in), the sync status of each object, and the writes the CRM refused."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from mirror import MirrorError
from prm_portal.auth import manager_required
from prm_portal.forms import ActionForm, RejectForm, ResolveForm
from prm_portal.state import portal_state

blueprint = Blueprint("manager", __name__, url_prefix="/manager")
STATUSES = ("Submitted", "Approved", "Rejected", "Expired")


def _registrations() -> Any:
    state = portal_state()
    found = state.mirror.registrations(state.settings.source)
    if found is None:
        abort(404)
    return found


def _by() -> str:
    return f"portal:{session.get('name', 'channel manager')}"[:128]


@blueprint.route("/registrations")
@manager_required
def registrations() -> Any:
    """Every partner's registrations, newest first (filtered by status)."""
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    rows = _registrations().recent(status=status, limit=200)
    names = {
        p["id"]: p["name"] for p in portal_state().mirror.partners(portal_state().settings.source)
    }
    return render_template(
        "manager/registrations.html", rows=rows, status=status, statuses=STATUSES, names=names
    )


@blueprint.route("/registrations/<registration_id>")
@manager_required
def registration(registration_id: str) -> Any:
    """One registration with its assessment and matches, and the approve and reject forms."""
    try:
        shown = _registrations().show(registration_id)
    except MirrorError:
        abort(404)
    return render_template(
        "manager/registration.html",
        shown=shown,
        registration_id=registration_id,
        approve=ActionForm(),
        reject=RejectForm(),
    )


@blueprint.route("/registrations/<registration_id>/approve", methods=["POST"])
@manager_required
def approve(registration_id: str) -> Any:
    """Approve: one opportunity attributed to the partner, however often this is sent."""
    if ActionForm().validate_on_submit():
        try:
            opportunity = _registrations().approve(registration_id, by=_by())
            flash(f"Approved: opportunity {opportunity} (queued for the CRM).", "ok")
        except MirrorError as exc:
            flash(str(exc), "error")
    return redirect(url_for("manager.registration", registration_id=registration_id))


@blueprint.route("/registrations/<registration_id>/reject", methods=["POST"])
@manager_required
def reject(registration_id: str) -> Any:
    """Reject with the reason the partner will read."""
    form = RejectForm()
    if form.validate_on_submit():
        try:
            _registrations().reject(registration_id, form.reason.data or "", by=_by())
            flash("Rejected.", "ok")
        except MirrorError as exc:
            flash(str(exc), "error")
    else:
        flash("A reason of at least 3 characters is needed.", "error")
    return redirect(url_for("manager.registration", registration_id=registration_id))


@blueprint.route("/conflicts")
@manager_required
def conflicts() -> Any:
    """Open conflicts: a field changed in the portal and in the CRM."""
    return render_template(
        "manager/conflicts.html",
        conflicts=portal_state().mirror.conflicts("open"),
        form=ResolveForm(),
    )


@blueprint.route("/conflicts/<int:conflict_id>", methods=["POST"])
@manager_required
def resolve(conflict_id: int) -> Any:
    """Resolve one conflict: take ``crm``, ``portal`` or ``value``."""
    form = ResolveForm()
    if form.validate_on_submit():
        value = form.value.data if form.take.data == "value" else None
        try:
            portal_state().mirror.resolve_conflict(conflict_id, form.take.data or "", value, _by())
            flash(f"Conflict {conflict_id} resolved ({form.take.data}).", "ok")
        except (MirrorError, ValueError) as exc:
            flash(str(exc), "error")
    else:
        flash("Choose crm, portal or value.", "error")
    return redirect(url_for("manager.conflicts"))


@blueprint.route("/status")
@manager_required
def status() -> Any:
    """Sync status per object and the outbox's entries per status."""
    mirror = portal_state().mirror
    return render_template(
        "manager/status.html", objects=mirror.status(), queue=mirror.queue_summary()
    )


@blueprint.route("/failed")
@manager_required
def failed() -> Any:
    """Writes the CRM refused, with its message."""
    return render_template(
        "manager/failed.html", entries=portal_state().mirror.outbox(status="failed", limit=200)
    )
