"""Visibility: which records and fields each partner may see, from the configured rules to the
grants derived from them, kept current with every page and every portal write.

Words, used the same way in every module here and in ``mirror.portal``:

- **rule**: what the configuration says about one object (``SliceRule``: its paths, owner
  field, field rules); a source's rules are ``VisibilityRules`` (``rules``, checked against the
  mirrored schema by ``rule_check``).
- **path**: one way a rule reaches a record from the partner (``SlicePath``: self, direct,
  through a parent, through children).
- **grant**: one derived row saying partner P (and, for a rep's slice, owner U) may see record
  R of an object through a path; stored in ``mirror_access``, or read through the parent for an
  object whose only path is its parent (``grants``).
- **slice**: everything one partner (or one rep) may see; its size per object (``sizes``).
- **membership**: a record's being in a slice; entering and leaving one is logged in the change
  feed (``memberships``).
- **upkeep**: keeping the grants current record by record as pages land and portal writes
  happen (``upkeep.GrantUpkeep``, one per source; a ``GrantPageHook`` per sync).
- **derivation**: computing the grants of whole objects from the rules, set-based in SQL
  (``derivation``, with one query per path from ``grant_queries``).
- **partner view**: a portal session reading and writing one slice (``mirror.portal``).

The PostgreSQL side: each sliced table's ``_partners`` column (``partner_columns``), the
row-level-security install and partner sessions (``postgres_rls``), and the column privileges
that follow the CRM's schema (``column_grants``: PostgreSQL's ``GRANT`` of a column to a portal
role, not a grant in the sense above). "Access" survives only in stored names
(``mirror_access`` holds the grants) and in ``AccessDenied``.
"""
