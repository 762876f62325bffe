"""Tests of ``adapters/_kit``, what the three adapters share."""
