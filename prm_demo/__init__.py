"""``prm-mirror demo``: a seeded sandbox mirrored into SQLite through the public API, with partner
slices shown.
"""
