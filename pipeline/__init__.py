"""Curation pipeline library (no orchestration imports)."""
