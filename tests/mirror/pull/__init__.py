"""Tests of ``mirror/pull``."""
