"""Visibility: which records and fields each partner may see. Slice rules declared as paths from
the partner, the access table and the grants derived from them (kept current with every page),
slice sizes, the checks that fail closed on a rule in doubt, and PostgreSQL row-level security
for plain-SQL portals.
"""
