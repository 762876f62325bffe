"""A local Dynamics 365 organisation: an Entra ID stand-in for msal and the Dataverse Web API with
OData queries, change tracking, $batch and service-protection limits.
"""
