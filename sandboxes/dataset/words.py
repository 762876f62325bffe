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
