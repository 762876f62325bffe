"""Push: portal edits back to the CRM. The outbox and its typed entries, the write each entry
becomes, the writer that sends them in batches, the checks that an edit still applies
(preconditions, the three-way merge), a refused write's revert, conflicts parked for a person,
and how answers that were lost are settled (echoes, landed updates, lost creates, local ids).
"""
