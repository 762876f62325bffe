"""Sign-in and sign-out, and what guards every page: a partner session or a manager session.

The session cookie (signed by Flask) holds only who signed in; every partner request opens
its data through that session's ``PartnerView``, and a manager request through the ``Mirror``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from mirror import AccessDenied, PartnerView
from prm_portal.forms import LoginForm
from prm_portal.identity import manager_password_ok
from prm_portal.state import portal_state

blueprint = Blueprint("auth", __name__)
Handler = TypeVar("Handler", bound=Callable[..., Any])


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The partner users' sign-in."""
    form = LoginForm()
    if form.validate_on_submit():
        identity = portal_state().identity.sign_in(form.login.data or "", form.password.data or "")
        if identity is not None:
            session.clear()
            session.update(
                kind="partner",
                partner_id=identity.partner_id,
                user_id=identity.user_id,
                role=identity.role,
                name=identity.name,
            )
            return redirect(url_for("partner.deals"))
        flash("Sign-in refused: check the e-mail and password.", "error")
    return render_template("login.html", form=form, manager=False)


@blueprint.route("/manager/login", methods=["GET", "POST"])
def manager_login() -> Any:
    """The channel manager's sign-in (the password configured for the portal)."""
    form = LoginForm()
    if form.validate_on_submit():
        expected = portal_state().settings.manager_password
        if manager_password_ok(expected, form.password.data or ""):
            session.clear()
            session.update(kind="manager", name=form.login.data or "channel manager")
            return redirect(url_for("manager.registrations"))
        flash("Sign-in refused.", "error")
    return render_template("login.html", form=form, manager=True)


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    """End the session."""
    if session.get("kind") == "partner":
        portal_state().forget(session["partner_id"], session["user_id"])
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.route("/")
def home() -> Any:
    """Where a visitor starts: its pages when signed in, else the sign-in."""
    if session.get("kind") == "partner":
        return redirect(url_for("partner.deals"))
    if session.get("kind") == "manager":
        return redirect(url_for("manager.registrations"))
    return redirect(url_for("auth.login"))


def partner_required(handler: Handler) -> Handler:
    """Run ``handler`` only for a partner session, with ``g.view`` its partner view."""

    @wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if session.get("kind") != "partner":
            return redirect(url_for("auth.login", next=request.path))
        try:
            g.view = portal_state().view(session["partner_id"], session["user_id"], session["role"])
        except AccessDenied:
            session.clear()
            return redirect(url_for("auth.login"))
        return handler(*args, **kwargs)

    return cast(Handler, guarded)


def manager_required(handler: Handler) -> Handler:
    """Run ``handler`` only for a channel manager's session."""

    @wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if session.get("kind") != "manager":
            if session.get("kind") == "partner":
                abort(403)
            return redirect(url_for("auth.manager_login"))
        return handler(*args, **kwargs)

    return cast(Handler, guarded)


def current_view() -> PartnerView:
    """The signed-in partner's view (inside a ``partner_required`` handler)."""
    view: PartnerView = g.view
    return view
