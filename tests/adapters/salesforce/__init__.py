"""Tests of ``adapters/salesforce``."""
