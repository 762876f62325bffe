"""Tests of ``adapters/hubspot``."""
