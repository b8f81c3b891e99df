"""Thin click entry points, one per MLproject phase; each parses, opens its MLflow run and calls `components`."""
