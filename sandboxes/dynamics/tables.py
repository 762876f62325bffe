"""The Dataverse sandbox's tables: system users, accounts, contacts, leads, opportunities and
the custom deal registrations, with their columns and choice options.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from sandboxes.dynamics.schema import Attribute, Entity


def text(name: str, label: str, length: int = 100, **extra: object) -> Attribute:
    """A single line of text."""
    return Attribute(name, "String", label, max_length=length, **extra)  # type: ignore[arg-type]


def memo(name: str, label: str, length: int = 2000, **extra: object) -> Attribute:
    """Multiple lines of text."""
    return Attribute(name, "Memo", label, max_length=length, **extra)  # type: ignore[arg-type]


def lookup(
    name: str, label: str, *targets: str, nav: str | None = None, **extra: object
) -> Attribute:
    """A lookup (``Customer`` when it can point at accounts and contacts)."""
    kind = "Customer" if set(targets) == {"account", "contact"} else "Lookup"
    return Attribute(name, kind, label, targets=targets, nav=nav, **extra)  # type: ignore[arg-type]


def choice(name: str, label: str, options: Iterable[tuple[int, str]], **extra: object) -> Attribute:
    """A choice (option set) column."""
    return Attribute(name, "Picklist", label, options=tuple(options), **extra)  # type: ignore[arg-type]


def system_columns(
    primary_id: str,
    *,
    owned: bool = True,
    states: tuple[tuple[int, str], ...] = (),
    statuses: tuple[tuple[int, str], ...] = (),
) -> list[Attribute]:
    """The columns every table has: key, owner, state, stamps and row version."""
    columns = [
        Attribute(primary_id, "Uniqueidentifier", "Id", update=False, primary_id=True,
                  required="SystemRequired"),
        Attribute("createdon", "DateTime", "Created On", create=False, update=False),
        Attribute("modifiedon", "DateTime", "Modified On", create=False, update=False),
        Attribute("versionnumber", "BigInt", "Version Number", create=False, update=False),
    ]  # fmt: skip
    if owned:
        columns += [
            Attribute("ownerid", "Owner", "Owner", targets=("systemuser", "team"),
                      required="SystemRequired"),
            Attribute("owneridtype", "EntityName", "Owner Type", create=False, update=False),
        ]  # fmt: skip
    if states:
        columns += [
            Attribute("statecode", "State", "Status", options=states, create=False),
            Attribute("statuscode", "Status", "Status Reason", options=tuple(statuses)),
        ]
    return columns


ACTIVE = ((0, "Active"), (1, "Inactive"))
ACTIVE_REASONS = ((1, "Active"), (2, "Inactive"))
INDUSTRIES = (
    (1, "Technology"), (2, "Manufacturing"), (3, "Healthcare"), (4, "Retail"), (5, "Finance"),
    (6, "Energy"), (7, "Education"), (8, "Transportation"), (9, "Media"), (10, "Hospitality"),
)  # fmt: skip
TIERS = ((100000000, "Registered"), (100000001, "Silver"), (100000002, "Gold"),
         (100000003, "Platinum"))  # fmt: skip
LEAD_SOURCES = ((1, "Advertisement"), (2, "Employee Referral"), (3, "External Referral"),
                (4, "Partner"), (5, "Public Relations"), (6, "Seminar"), (7, "Trade Show"),
                (8, "Web"), (9, "Word of Mouth"), (10, "Other"))  # fmt: skip
LEAD_STATES = ((0, "Open"), (1, "Qualified"), (2, "Disqualified"))
LEAD_STATUSES = ((1, "New"), (2, "Contacted"), (3, "Qualified"), (4, "Lost"),
                 (5, "Cannot Contact"), (6, "No Longer Interested"), (7, "Canceled"))  # fmt: skip
OPPORTUNITY_STATES = ((0, "Open"), (1, "Won"), (2, "Lost"))
OPPORTUNITY_STATUSES = ((1, "In Progress"), (2, "On Hold"), (3, "Won"), (4, "Canceled"),
                        (5, "Out-Sold"))  # fmt: skip
SALES_STAGES = ((0, "Qualify"), (1, "Develop"), (2, "Propose"), (3, "Close"))
FORECAST = ((100000001, "Pipeline"), (100000002, "Best case"), (100000003, "Committed"),
            (100000004, "Omitted"), (100000005, "Won"), (100000006, "Lost"))  # fmt: skip


def _systemuser() -> Entity:
    columns = [
        *system_columns("systemuserid", owned=False),
        text("firstname", "First Name", 64),
        text("lastname", "Last Name", 64),
        text("fullname", "Full Name", 200, create=False, update=False, primary_name=True),
        text("internalemailaddress", "Primary Email", 100),
        text("domainname", "User Name", 1024, required="SystemRequired"),
        Attribute("isdisabled", "Boolean", "Status", create=False),
        lookup("prm_partneraccountid", "Partner Account", "account",
               nav="prm_PartnerAccountId", custom=True),
        choice("prm_portalrole", "Portal Role", ((100000000, "Admin"), (100000001, "Rep")),
               custom=True),
    ]  # fmt: skip
    return Entity("systemuser", "systemusers", "systemuserid", "fullname", "User", "Users",
                  tuple(columns), object_type_code=8)  # fmt: skip


def _account() -> Entity:
    columns = [
        *system_columns("accountid", states=ACTIVE, statuses=ACTIVE_REASONS),
        text("name", "Account Name", 160, required="ApplicationRequired", primary_name=True),
        text("accountnumber", "Account Number", 20),
        text("websiteurl", "Website", 200),
        text("telephone1", "Main Phone", 50),
        choice("industrycode", "Industry", INDUSTRIES),
        text("address1_line1", "Address 1: Street 1", 250),
        text("address1_city", "Address 1: City", 80),
        text("address1_postalcode", "Address 1: ZIP/Postal Code", 20),
        text("address1_country", "Address 1: Country/Region", 80),
        Attribute("numberofemployees", "Integer", "Number of Employees",
                  min_value=0, max_value=1_000_000_000),
        Attribute("revenue", "Money", "Annual Revenue", min_value=0, max_value=1e14),
        lookup("parentaccountid", "Parent Account", "account"),
        lookup("primarycontactid", "Primary Contact", "contact"),
        Attribute("prm_ispartner", "Boolean", "Is Partner", custom=True),
        choice("prm_partnertier", "Partner Tier", TIERS, custom=True),
        memo("description", "Description"),
    ]  # fmt: skip
    return Entity("account", "accounts", "accountid", "name", "Account", "Accounts",
                  tuple(columns), object_type_code=1)  # fmt: skip


def _contact() -> Entity:
    columns = [
        *system_columns("contactid", states=ACTIVE, statuses=ACTIVE_REASONS),
        text("firstname", "First Name", 50),
        text("lastname", "Last Name", 50, required="ApplicationRequired"),
        text("fullname", "Full Name", 160, create=False, update=False, primary_name=True),
        text("emailaddress1", "Email", 100),
        text("jobtitle", "Job Title", 100),
        text("telephone1", "Business Phone", 50),
        lookup("parentcustomerid", "Company Name", "account", "contact"),
        Attribute("parentcustomeridtype", "EntityName", "Parent Customer Type",
                  create=False, update=False),
    ]  # fmt: skip
    return Entity("contact", "contacts", "contactid", "fullname", "Contact", "Contacts",
                  tuple(columns), object_type_code=2)  # fmt: skip


def _lead() -> Entity:
    columns = [
        *system_columns("leadid", states=LEAD_STATES, statuses=LEAD_STATUSES),
        text("subject", "Topic", 300),
        text("firstname", "First Name", 50),
        text("lastname", "Last Name", 50, required="ApplicationRequired"),
        text("fullname", "Name", 160, create=False, update=False, primary_name=True),
        text("companyname", "Company Name", 100),
        text("emailaddress1", "Email", 100),
        text("telephone1", "Business Phone", 50),
        text("address1_country", "Country/Region", 80),
        choice("leadsourcecode", "Lead Source", LEAD_SOURCES),
        lookup("prm_partneraccountid", "Partner Account", "account",
               nav="prm_PartnerAccountId", custom=True),
    ]  # fmt: skip
    return Entity(
        "lead", "leads", "leadid", "fullname", "Lead", "Leads", tuple(columns), object_type_code=4
    )


def _opportunity() -> Entity:
    columns = [
        *system_columns("opportunityid", states=OPPORTUNITY_STATES,
                        statuses=OPPORTUNITY_STATUSES),
        text("name", "Topic", 300, required="ApplicationRequired", primary_name=True),
        lookup("parentaccountid", "Account", "account"),
        lookup("customerid", "Potential Customer", "account", "contact"),
        Attribute("customeridtype", "EntityName", "Customer Type", create=False, update=False),
        lookup("prm_partneraccountid", "Partner Account", "account",
               nav="prm_PartnerAccountId", custom=True),
        Attribute("estimatedvalue", "Money", "Est. Revenue", min_value=0, max_value=1e12),
        Attribute("estimatedclosedate", "DateTime", "Est. Close Date", date_only=True),
        Attribute("closeprobability", "Integer", "Probability", min_value=0, max_value=100),
        choice("salesstage", "Sales Stage", SALES_STAGES),
        text("stepname", "Pipeline Phase", 200),
        memo("currentsituation", "Current Situation"),
        memo("description", "Description"),
        choice("msdyn_forecastcategory", "Forecast Category", FORECAST),
    ]  # fmt: skip
    return Entity("opportunity", "opportunities", "opportunityid", "name", "Opportunity",
                  "Opportunities", tuple(columns), object_type_code=3)  # fmt: skip


def _deal_registration() -> Entity:
    columns = [
        *system_columns("prm_dealregistrationid", states=ACTIVE, statuses=ACTIVE_REASONS),
        text("prm_name", "Name", 100, required="ApplicationRequired", primary_name=True),
        lookup("prm_partneraccountid", "Partner Account", "account", nav="prm_PartnerAccountId"),
        lookup("prm_opportunityid", "Opportunity", "opportunity", nav="prm_OpportunityId"),
        text("prm_status", "Registration Status", 40),
        text("prm_companyname", "Company Name", 255),
        text("prm_domain", "Domain", 255),
        text("prm_country", "Country", 80),
        Attribute("prm_amount", "Money", "Amount", min_value=0, max_value=1e12),
        Attribute("prm_closedate", "DateTime", "Close Date", date_only=True),
        text("prm_contactname", "Contact Name", 120),
        text("prm_contactemail", "Contact Email", 128),
        text("prm_currency", "Currency", 3),
        text("prm_products", "Products", 1000),
        memo("prm_notes", "Notes", 4000),
        text("prm_conflictstatus", "Conflict Status", 40),
        Attribute("prm_conflictscore", "Double", "Conflict Score", min_value=0, max_value=1),
        text("prm_rejectionreason", "Rejection Reason", 255),
    ]  # fmt: skip
    columns = [replace_custom(c) for c in columns]
    return Entity("prm_dealregistration", "prm_dealregistrations", "prm_dealregistrationid",
                  "prm_name", "Deal Registration", "Deal Registrations", tuple(columns),
                  custom=True, object_type_code=10432)  # fmt: skip


def replace_custom(attribute: Attribute) -> Attribute:
    """Mark the ``prm_`` columns of a custom table as custom."""
    if not attribute.name.startswith("prm_") or attribute.primary_id:
        return attribute
    return replace(attribute, custom=True)


def default_tables() -> tuple[Entity, ...]:
    """Every table of a new sandbox organisation."""
    return (_systemuser(), _account(), _contact(), _lead(), _opportunity(), _deal_registration())
