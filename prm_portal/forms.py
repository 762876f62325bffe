"""The portal's forms (Flask-WTF: each carries its CSRF token and checks its fields)."""

from __future__ import annotations

import datetime as dt

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    DecimalField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
DOMAIN = r"^(?!-)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class LoginForm(FlaskForm):
    """E-mail (a partner user's) or name (the manager's) and password."""

    login = StringField("E-mail", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=255)])


class DealEditForm(FlaskForm):
    """The deal fields a partner may change from the deal page."""

    StageName = SelectField("Stage", choices=[SelectChoice(s) for s in STAGES])
    Amount = DecimalField("Amount", places=2, validators=[Optional(), NumberRange(min=0)])
    CloseDate = DateField("Close date", validators=[DataRequired()])
    NextStep = StringField("Next step", validators=[Optional(), Length(max=255)])


class ContactForm(FlaskForm):
    """A new contact at one of the partner's accounts."""

    AccountId = SelectField("Account", choices=[], validate_choice=True)
    FirstName = StringField("First name", validators=[Optional(), Length(max=40)])
    LastName = StringField("Last name", validators=[DataRequired(), Length(max=80)])
    Email = EmailField(
        "E-mail",
        validators=[Optional(), Regexp(EMAIL, message="is not an e-mail address"), Length(max=80)],
    )
    Phone = StringField("Phone", validators=[Optional(), Length(max=40)])
    Title = StringField("Title", validators=[Optional(), Length(max=128)])


class RegistrationForm(FlaskForm):
    """A deal registration, checked field by field before the engine checks it again."""

    company = StringField("Company", validators=[DataRequired(), Length(min=2, max=255)])
    domain = StringField(
        "Web domain",
        validators=[Optional(), Length(max=255), Regexp(DOMAIN, message="is not a web domain")],
    )
    country = StringField("Country", validators=[Optional(), Length(max=80)])
    contact_name = StringField("Contact name", validators=[Optional(), Length(max=120)])
    contact_email = EmailField(
        "Contact e-mail",
        validators=[Optional(), Regexp(EMAIL, message="is not an e-mail address"), Length(max=128)],
    )
    amount = DecimalField("Amount", places=2, validators=[DataRequired(), NumberRange(min=0)])
    currency = StringField(
        "Currency",
        default="USD",
        validators=[DataRequired(), Regexp(r"^[A-Z]{3}$", message="three capital letters")],
    )
    close_date = DateField("Expected close date", validators=[DataRequired()])
    products = StringField("Product codes (comma-separated)", validators=[Length(max=2000)])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=4000)])

    def validate_close_date(self, field: DateField) -> None:
        """A registration is for a deal still to close."""
        if field.data and field.data < dt.datetime.now(dt.UTC).date():
            raise ValidationError("is in the past")

    def request(self) -> dict[str, object]:
        """The registration as ``PartnerView.register_deal`` takes it."""
        products = [p.strip() for p in (self.products.data or "").split(",") if p.strip()]
        return {
            "company": self.company.data,
            "domain": self.domain.data or None,
            "country": self.country.data or None,
            "contact_name": self.contact_name.data or None,
            "contact_email": self.contact_email.data or None,
            "amount": float(self.amount.data or 0),
            "currency": self.currency.data,
            "close_date": self.close_date.data,
            "products": products,
            "notes": self.notes.data or None,
        }


class ActionForm(FlaskForm):
    """A button that changes something (approve, sign out): its CSRF token only."""


class RejectForm(FlaskForm):
    """Rejecting a registration, with the reason the partner will read."""

    reason = StringField("Reason", validators=[DataRequired(), Length(min=3, max=255)])


class ResolveForm(FlaskForm):
    """Resolving a conflict: take the CRM's value, the portal's, or one typed here."""

    take = HiddenField(validators=[DataRequired(), Regexp(r"^(crm|portal|value)$")])
    value = StringField("Value", validators=[Optional(), Length(max=4000)])
