"""The daily pipeline on Dagster."""
