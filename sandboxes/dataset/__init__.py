"""The deterministic, CRM-neutral dataset every sandbox is seeded from, streamed record by record.
"""
