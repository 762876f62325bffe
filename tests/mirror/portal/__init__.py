"""Tests of ``mirror/portal``."""
