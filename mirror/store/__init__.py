"""The store: one SQLAlchemy database (SQLite by default, PostgreSQL to scale out), the engine's
own tables and one typed table per mirrored object, records converted and hashed on their way
in, many rows through one statement, and SQLite's single writer and WAL checkpoints.
"""
