"""Tests of ``mirror/store``."""
