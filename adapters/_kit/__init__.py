"""What every adapter shares: HTTP retry timing and request counting, and fitting ids and fields
into requests the CRM accepts.
"""
