"""A local HubSpot portal: CRM objects v3, search, associations v4, properties, property history,
merges and HubSpot's rate limits.
"""
