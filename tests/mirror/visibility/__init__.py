"""Tests of ``mirror/visibility``."""
