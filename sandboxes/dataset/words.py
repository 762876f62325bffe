"""Word lists the generated dataset draws names and categories from (CRM-neutral values)."""

from __future__ import annotations

COMPANY_FIRST = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
    "Soylent", "Hooli", "Vandelay", "Pied Piper", "Massive", "Aperture", "Black Mesa", "Oscorp",
    "Gringotts", "Monarch", "Nakatomi", "Dunder", "Sterling", "Prestige", "Blue Sun", "Vehement",
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adventure", "Proseware",
)  # fmt: skip
COMPANY_SECOND = (
    "Systems", "Industries", "Labs", "Holdings", "Logistics", "Foods", "Energy", "Analytics",
    "Networks", "Dynamics", "Works", "Partners", "Group", "Health", "Robotics", "Media",
)  # fmt: skip
PROSPECT_MIDDLE = (
    "Pacific", "Nordic", "Alpine", "Harbor", "Summit", "Meridian", "Coastal", "Granite", "Cedar",
    "Atlas", "Beacon", "Orchid", "Falcon", "Juniper", "Keystone", "Lakeside", "Redwood", "Silver",
    "Vantage", "Zenith",
)  # fmt: skip
"""The middle word of a registered prospect's name (``Acme Pacific Systems``)."""
COUNTRY_TLDS = {
    "United States": "com", "Canada": "ca", "United Kingdom": "co.uk", "Germany": "de",
    "France": "fr", "Netherlands": "nl", "Spain": "es", "Japan": "co.jp", "Australia": "com.au",
    "Brazil": "com.br", "India": "in", "Singapore": "com.sg",
}  # fmt: skip
"""The web domain suffix a prospect in each country of ``PLACES`` registers under."""
PARTNER_SUFFIX = ("Solutions", "Consulting", "Integrators", "Resellers", "Channel", "Advisors")
FIRST_NAMES = (
    "Ann", "Bob", "Carla", "Dev", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam",
    "Mei", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen",
    "Xavier", "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Lee", "Garcia", "Smith", "Okafor", "Nguyen", "Muller", "Rossi", "Kowalski", "Tanaka", "Silva",
    "Haddad", "Novak", "Johansson", "Dubois", "Papadopoulos", "Kim", "Ahmed", "Murphy", "Costa",
    "Ivanova",
)  # fmt: skip
TITLES = (
    "CEO", "CTO", "VP Sales", "Head of IT", "Procurement Manager", "Account Executive",
    "Solutions Engineer", "Partner Manager", "Operations Director", "Buyer",
)  # fmt: skip
STREETS = ("Main St", "Market St", "Harbour Rd", "Station Rd", "Park Ave", "King St", "Elm St")
PLACES = (
    ("United States", "Austin"), ("United States", "Boston"), ("United States", "Denver"),
    ("Canada", "Toronto"), ("United Kingdom", "London"), ("Germany", "Berlin"),
    ("France", "Lyon"), ("Netherlands", "Utrecht"), ("Spain", "Valencia"), ("Japan", "Osaka"),
    ("Australia", "Perth"), ("Brazil", "Curitiba"), ("India", "Pune"), ("Singapore", "Singapore"),
)  # fmt: skip
INDUSTRIES = (
    "Technology", "Manufacturing", "Healthcare", "Retail", "Finance", "Energy", "Education",
    "Transportation", "Media", "Hospitality",
)  # fmt: skip
PARTNER_TIERS = ("Platinum", "Gold", "Gold", "Silver", "Silver", "Silver", "Registered")
LEAD_STATUSES = (
    "Open - Not Contacted", "Working - Contacted", "Working - Contacted",
    "Closed - Converted", "Closed - Not Converted",
)  # fmt: skip
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
PRODUCT_NAMES = ("Core", "Edge", "Cloud", "Insight", "Secure", "Flow", "Pulse", "Vault")
PRODUCT_FAMILIES = ("Software", "Hardware", "Services", "Support")
STAGES = (
    ("prospecting", 10), ("qualification", 10), ("needs_analysis", 20),
    ("value_proposition", 50), ("decision_makers", 60), ("proposal", 75),
    ("negotiation", 90), ("closed_won", 100), ("closed_won", 100), ("closed_lost", 0),
)  # fmt: skip
DEAL_KINDS = ("New Business", "Expansion", "Renewal", "Upgrade", "Pilot")
OPPORTUNITY_TYPES = (
    "new_business",
    "existing_upgrade",
    "existing_replacement",
    "existing_downgrade",
)
DEAL_STATUSES = ("submitted", "approved", "approved", "rejected", "expired")
