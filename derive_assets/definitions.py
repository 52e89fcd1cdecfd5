"""Load the specs and assemble Dagster `Definitions`; nothing else happens here.

The specs load leniently unless `DERIVE_STRICT_SPECS=1`: an invalid spec (and what reads it) is left out and shown as
a placeholder in the `derive_errors` asset group, so the other specs' assets still load (`factory/error_assets.py`).
"""

from __future__ import annotations

from dagster import Definitions

from derive_assets.factory.build import build_definitions
from derive_assets.settings import DeriveSettings

defs: Definitions = build_definitions(DeriveSettings.from_env())
