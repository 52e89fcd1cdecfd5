"""A bare one-asset Dagster project, the reference for the CLI benchmark."""
