"""The deterministic, CRM-neutral dataset every sandbox is seeded from.

It is streamed record by record, the same for a seed and size on every machine.
"""
