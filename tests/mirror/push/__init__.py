"""Tests of ``mirror/push``."""
