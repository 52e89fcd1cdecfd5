"""Shared pytest configuration.

Kept deliberately small. Tests that need a real PostgreSQL or MariaDB server live under tests/integration/,
whose conftest marks them ``integration`` automatically and provides per-test databases. Deselect them with
``pytest -m "not integration"``; start the servers with ``make services``.
"""
