"""Benchmarks of the prm-mirror engine against the local Salesforce sandbox."""
