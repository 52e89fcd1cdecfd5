"""Load the specs and assemble Dagster `Definitions`; nothing else happens here."""

from __future__ import annotations

from dagster import Definitions

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

defs: Definitions = build_definitions(DeriveSettings.from_env())
