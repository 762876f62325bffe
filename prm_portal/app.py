"""``create_app``: the Flask app over an open ``Mirror``, with CSRF on every form, the
partner's and the channel manager's pages, the live event stream and the error pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, g, render_template, session
from flask_wtf.csrf import CSRFError, CSRFProtect

from mirror import AccessDenied, Mirror, QueryError
from prm_portal import auth, events, manager, partner, registration_pages
from prm_portal.forms import ActionForm
from prm_portal.identity import IdentityProvider, MirroredUsers
from prm_portal.settings import PortalSettings
from prm_portal.state import EXTENSION, PortalState


def create_app(
    mirror: Mirror,
    settings: PortalSettings,
    identity: IdentityProvider | None = None,
    *,
    testing: bool = False,
) -> Flask:
    """The portal app. ``identity`` signs partner users in (default: ``MirroredUsers`` with
    the settings' shared password); the caller keeps ``mirror`` open while the app serves."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        TESTING=testing,
    )
    CSRFProtect(app)
    provider = identity or MirroredUsers(mirror, settings.partner_password, settings.source)
    app.extensions[EXTENSION] = PortalState(mirror, settings, provider)
    for module in (auth, partner, registration_pages, events, manager):
        app.register_blueprint(module.blueprint)
    _errors(app)
    app.jinja_env.filters["money"] = _money
    app.jinja_env.filters["when"] = _when
    app.context_processor(_globals)
    return app


def _errors(app: Flask) -> None:
    @app.errorhandler(AccessDenied)
    def denied(_error: AccessDenied) -> Any:
        # the same page as a record that does not exist: nothing is told about the record
        return render_template("error.html", code=404, message="Not found."), 404

    @app.errorhandler(404)
    def missing(_error: Exception) -> Any:
        return render_template("error.html", code=404, message="Not found."), 404

    @app.errorhandler(403)
    def forbidden(_error: Exception) -> Any:
        return render_template("error.html", code=403, message="Not for this session."), 403

    @app.errorhandler(QueryError)
    def bad_query(error: QueryError) -> Any:
        return render_template("error.html", code=400, message=str(error)), 400

    @app.errorhandler(CSRFError)
    def bad_token(error: CSRFError) -> Any:
        message = f"The form expired or did not come from this site ({error.description})."
        return render_template("error.html", code=400, message=message), 400


def _globals() -> dict[str, Any]:
    # a partner page carries the feed's cursor, from which its live changes are streamed
    cursor = events.page_cursor(g.view) if "view" in g else None
    return {"who": dict(session), "action_form": ActionForm, "feed_cursor": cursor}


def _money(value: Any) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return str(value)


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "" if value is None else str(value)
