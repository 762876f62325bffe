"""The store: one SQLAlchemy database (SQLite by default, PostgreSQL to scale out), the engine's
own tables and one typed table per mirrored object with their additive migrations, records
converted (one converter) and hashed on their way in, many rows through one statement, plain
reads of an object's rows, and SQLite's single writer and WAL checkpoints.
"""
