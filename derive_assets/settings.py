"""Where things are and which engines to use, read from the environment in one place, when definitions build."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DeriveSettings:
    specs_dir: Path
    """Spec YAML directory (`DERIVE_SPECS_DIR`, default `table_specs/` of the project)."""
    home: Path
    """Local state: warehouse file, embedded sources (`DERIVE_HOME`, default `.derive/` of the project)."""
    warehouse: str = "duckdb"
    """Warehouse engine (`DERIVE_WAREHOUSE`): `duckdb`."""

    @property
    def duckdb_path(self) -> Path:
        return Path(os.environ.get("DERIVE_DUCKDB_PATH", self.home / "warehouse.duckdb"))

    @property
    def embedded_sources_dir(self) -> Path:
        return self.home / "sources"

    @classmethod
    def from_env(cls) -> DeriveSettings:
        warehouse = os.environ.get("DERIVE_WAREHOUSE", "duckdb")
        if warehouse != "duckdb":
            raise ValueError(f"DERIVE_WAREHOUSE={warehouse!r} is not supported; allowed: ['duckdb']")
        return cls(
            specs_dir=Path(os.environ.get("DERIVE_SPECS_DIR", PROJECT_ROOT / "table_specs")),
            home=Path(os.environ.get("DERIVE_HOME", PROJECT_ROOT / ".derive")),
            warehouse=warehouse,
        )
