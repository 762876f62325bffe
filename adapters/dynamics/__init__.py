"""The Dynamics 365 adapter on msal and the Dataverse Web API: change-tracking reads, $batch writes
with etag preconditions, and the error table.
"""
