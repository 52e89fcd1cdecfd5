"""Derive as a Dagster component type, for `dg` projects: `type: derive_assets.components.DeriveSpecs` in a
`defs.yaml` loads a whole specs directory (see derive_specs.py). This module is the `dg` registry module (the
`dagster_dg_cli.registry_modules` entry point in pyproject.toml), so it exports the component type and nothing else
`dg list components` would show."""

from derive_assets.components.derive_specs import DeriveSpecs as DeriveSpecs
