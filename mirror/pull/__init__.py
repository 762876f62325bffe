"""Pull: CRM pages into the store. The sync loop, one transaction per page, split backfills over id
ranges, reconciliation of incoming records with open portal edits, the self-audit, and the
record of each run.
"""
