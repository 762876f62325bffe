"""Pull: CRM pages into the store. The sync loop, one transaction per page with the next pages
read ahead, split backfills over id ranges, the delete sweep, reconciliation of incoming records
with open portal edits, the self-audit, and the record of each run.
"""
