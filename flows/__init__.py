"""Prefect flows and deployments over the `pipeline` library."""
