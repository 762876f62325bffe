"""The HubSpot adapter on hubspot-api-client: list and keyset-search reads, v3 batch writes,
associations, property-history checks, and the error table.
"""
