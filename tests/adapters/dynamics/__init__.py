"""Tests of ``adapters/dynamics``."""
