"""Dagster asset definitions, one module per group of the lineage."""
