"""The change-stream engine's tests, on TinyCRM's stream (tests/adapters/fourth/stream.py)."""
