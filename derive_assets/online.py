"""The read path for online services: fetch exported rows by key from the online store.

Build one `OnlineReader` per process (it loads the export specs once) and call `lookup` per request:

    reader = OnlineReader.from_env()
    reader.lookup("user_profile_online", 42)
    # [{'user_id': 42, 'display_name': 'Ada L.', 'region': 'eu', ...}]
    reader.lookup("region_payments_online", "eu", "2026-11-20")   # partition key, then clustering prefix

Keys may be given as strings (as from a command line); they are converted to the columns' declared types.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from derive_assets.factory.build import build_online_store
from derive_assets.factory.export_assets import online_table
from derive_assets.settings import DeriveSettings
from derive_assets.specs.project import SpecProject, load_project
from resources.online_store import OnlineStore, OnlineTable


class UnknownExport(KeyError):
    """`lookup` of an export no spec defines; the message lists the exports (a `KeyError`, printed plainly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown export"


class BadKeyValue(ValueError):
    """A key value that is not its column's declared type (e.g. text for an INT64 key)."""


_WORDS = {
    "INT64": "an integer (INT64), e.g. 42",
    "FLOAT64": "a number (FLOAT64), e.g. 1.5",
    "NUMERIC": "a decimal number (NUMERIC), e.g. 12.34",
    "BOOL": "true or false (BOOL)",
    "DATE": "a date (DATE), e.g. 2026-11-20",
    "TIMESTAMP": "an ISO timestamp (TIMESTAMP), e.g. 2026-11-20T10:00:00+00:00",
    "DATETIME": "an ISO date and time (DATETIME), e.g. 2026-11-20T10:00:00",
}
"""How to write a key value of each type on the command line."""

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class OnlineReader:
    def __init__(self, project: SpecProject, store: OnlineStore):
        self._store = store
        self._tables = {e.spec.name: online_table(e) for e in project.exports}
        self._ready: set[str] = set()

    @classmethod
    def from_env(cls) -> OnlineReader:
        settings = DeriveSettings.from_env()
        return cls(
            load_project(settings.specs_dir, cache_dir=settings.cache_dir), build_online_store(settings)
        )

    def table(self, export: str) -> OnlineTable:
        if export not in self._tables:
            raise UnknownExport(f"no export named '{export}'; exports: {sorted(self._tables)}")
        return self._tables[export]

    def lookup(self, export: str, *key: Any) -> list[dict[str, Any]]:
        table = self.table(export)
        types = {c.name: c.type for c in table.columns}
        values = []
        for name, value in zip(table.primary_key, key, strict=False):
            try:
                values.append(_coerce(value, types[name]))
            except ValueError as exc:
                raise BadKeyValue(
                    f"export {export}: {exc}; give {name} as {_WORDS.get(types[name], types[name])} (the key is "
                    f"{list(table.primary_key)}: the partition key {list(table.partition_key)} first)"
                ) from None
        return self._store.lookup(table, values)


def _coerce(value: Any, column_type: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if column_type == "INT64":
            return int(value)
        if column_type == "FLOAT64":
            return float(value)
        if column_type == "NUMERIC":
            return Decimal(value)
        if column_type == "BOOL":
            if value.strip().lower() not in BOOLEANS:
                raise ValueError(f"allowed: {sorted(BOOLEANS)}")
            return BOOLEANS[value.strip().lower()]
        if column_type == "DATE":
            return dt.date.fromisoformat(value)
        if column_type in ("TIMESTAMP", "DATETIME"):
            return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"key value {value!r} is not a valid {column_type}: {exc}") from None
    return value
