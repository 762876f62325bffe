"""CRM adapters: one package per CRM, each implementing the engine's CrmAdapter port on that CRM's
official client, with the same roles (adapter, client, errors, read, write, types, settings),
plus _kit for what they share. Adapters receive their HTTP session or transport from outside and
never import a sandbox.
"""
