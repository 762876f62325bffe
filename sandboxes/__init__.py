"""Local CRM sandboxes for tests, the demo and the benchmarks: HTTP servers on 127.0.0.1 that speak
the wire protocol of Salesforce, HubSpot and Dynamics 365 over a generated dataset. This package
imports nothing from the product (mirror, adapters); the product never imports it.
"""
