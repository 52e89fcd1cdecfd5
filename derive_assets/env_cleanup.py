"""Cleanup of environments (`derive env list`, `derive env drop`): find them, drop one, or every idle one.

An environment is known by its shadow datasets in the warehouse (`alice__analytics`: `env_of_dataset`) and by its
asset keys in the Dagster instance (first part `alice__analytics`). Dropping one touches nothing else:

- only the tables Derive created (they carry its marker) in the environment's datasets are dropped;
  `Warehouse.drop_table` refuses any other;
- a dataset is dropped only when it is empty afterwards and Derive made it (it held one of Derive's tables, or
  the event log knows assets in it); a dataset that still holds a table Derive did not create keeps that table,
  and the result says so;
- production datasets are never named (spec datasets cannot contain `__`, and a name that is not a valid
  environment name is refused by `validate_name` before anything is listed);
- the environment's asset keys are wiped from the event log (`DagsterInstance.wipe_assets`), so an environment
  created again under the same name starts with fresh watermarks and code versions.

Last activity is the newest materialization among the environment's asset keys; without an instance, or without
any materialization, it is unknown, and `--older-than` never drops an environment whose activity is unknown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from derive_assets.environments import SEPARATOR, env_of_dataset, validate_name

if TYPE_CHECKING:
    from dagster import AssetKey, DagsterInstance

    from resources.warehouse import Warehouse


class EnvCleanupError(ValueError):
    """A cleanup request that cannot be carried out as given (e.g. an age that is not `14d` or `12h`)."""


@dataclass(frozen=True)
class Environment:
    """What the warehouse and the event log hold of one environment."""

    name: str
    datasets: tuple[str, ...] = ()
    """Its shadow datasets in the warehouse (`<name>__<dataset>`), sorted."""
    tables: tuple[str, ...] = ()
    """The tables Derive created in them (`dataset.name`), sorted."""
    rows: int | None = None
    """Rows of those tables together; None when not counted."""
    asset_keys: tuple[AssetKey, ...] = ()
    """Its asset keys in the event log (first part `<name>__...`)."""
    last_activity: dt.datetime | None = None
    """The newest materialization of those keys (UTC); None: unknown."""

    def describe_activity(self, now: dt.datetime) -> str:
        if self.last_activity is None:
            return "unknown"
        return f"{self.last_activity:%Y-%m-%d %H:%M} UTC ({_age(now - self.last_activity)} ago)"


@dataclass
class DropResult:
    """What `drop_environment` did."""

    name: str
    dropped_tables: list[str] = field(default_factory=list)
    dropped_datasets: list[str] = field(default_factory=list)
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Datasets left in place, each with the tables Derive did not create that it still holds (empty: a dataset
    Derive never wrote into)."""
    wiped_keys: int = 0


def environments(
    warehouse: Warehouse, instance: DagsterInstance | None, count_rows: bool = True
) -> list[Environment]:
    """Every environment the warehouse or the event log knows, by name."""
    by_env: dict[str, list[str]] = {}
    for dataset in warehouse.datasets():
        found = env_of_dataset(dataset)
        if found is not None:
            by_env.setdefault(found[0], []).append(dataset)
    keys = _keys_by_env(instance)
    names = sorted(set(by_env) | set(keys))
    return [
        _describe(warehouse, instance, name, by_env.get(name, []), keys.get(name, []), count_rows)
        for name in names
    ]


def environment(
    warehouse: Warehouse, instance: DagsterInstance | None, name: str, count_rows: bool = False
) -> Environment:
    """One environment (empty when nothing of it exists); `EnvironmentNameError` for a name that cannot name
    one, so a production dataset is never in reach."""
    validate_name(name)
    datasets = [d for d in warehouse.datasets() if _env(d) == name]
    return _describe(warehouse, instance, name, datasets, _keys_by_env(instance).get(name, []), count_rows)


def drop_environment(
    warehouse: Warehouse,
    instance: DagsterInstance | None,
    env: Environment,
    say: Callable[[str], None] = print,
) -> DropResult:
    """Drop `env`'s Derive tables, then its datasets that are empty and Derive's, then wipe its asset keys."""
    from resources.warehouse import DatasetNotEmpty

    validate_name(env.name)
    result = DropResult(env.name)
    for ref in env.tables:
        if _env(ref.split(".", 1)[0]) != env.name:  # never anything outside the environment's datasets
            raise AssertionError(f"{ref} is not a table of environment {env.name}")
        warehouse.drop_table(ref)
        result.dropped_tables.append(ref)
        say(f"dropped table {ref}")
    derive_made = {ref.split(".", 1)[0] for ref in env.tables} | {key.path[0] for key in env.asset_keys}
    for dataset in env.datasets:
        if dataset not in derive_made:
            result.kept[dataset] = ()
            say(f"kept dataset {dataset}: Derive never wrote into it")
            continue
        try:
            warehouse.drop_dataset(dataset)
        except DatasetNotEmpty as exc:
            result.kept[dataset] = exc.tables
            say(
                f"kept dataset {dataset}: it still holds tables Derive did not create: {', '.join(exc.tables)}"
            )
            continue
        result.dropped_datasets.append(dataset)
        say(f"dropped dataset {dataset}")
    if instance is not None and env.asset_keys:
        instance.wipe_assets(list(env.asset_keys))
        result.wiped_keys = len(env.asset_keys)
        say(f"wiped {len(env.asset_keys)} asset key(s) of {env.name} from the event log")
    return result


def idle(
    envs: Iterable[Environment], older_than: dt.timedelta, now: dt.datetime
) -> tuple[list[Environment], list[Environment]]:
    """(environments last active before `now - older_than`, environments whose last activity is unknown)."""
    cutoff = now - older_than
    old, unknown = [], []
    for env in envs:
        if env.last_activity is None:
            unknown.append(env)
        elif env.last_activity < cutoff:
            old.append(env)
    return old, unknown


_AGE = re.compile(r"^\s*(\d+)\s*([dh])\s*$")


def parse_age(text: str) -> dt.timedelta:
    """`14d` (days) or `12h` (hours) as a duration."""
    found = _AGE.match(text.lower())
    if found is None or int(found[1]) == 0:
        raise EnvCleanupError(
            f"--older-than {text!r} is not an age; give a positive whole number of days or hours, e.g. 14d or "
            "36h"
        )
    amount = int(found[1])
    return dt.timedelta(days=amount) if found[2] == "d" else dt.timedelta(hours=amount)


def _env(dataset: str) -> str | None:
    found = env_of_dataset(dataset)
    return found[0] if found else None


def _keys_by_env(instance: DagsterInstance | None) -> dict[str, list[AssetKey]]:
    if instance is None:
        return {}
    keys: dict[str, list[AssetKey]] = {}
    for key in instance.get_asset_keys():
        name = _env(key.path[0]) if key.path and SEPARATOR in key.path[0] else None
        if name is not None:
            keys.setdefault(name, []).append(key)
    return keys


def _describe(
    warehouse: Warehouse,
    instance: DagsterInstance | None,
    name: str,
    datasets: Sequence[str],
    keys: Sequence[AssetKey],
    count_rows: bool,
) -> Environment:
    tables = tuple(warehouse.managed_tables(sorted(datasets))) if datasets else ()
    rows = sum(warehouse.row_count(ref) for ref in tables) if count_rows else None
    return Environment(
        name,
        tuple(sorted(datasets)),
        tables,
        rows,
        tuple(sorted(keys, key=lambda k: tuple(k.path))),
        _last_activity(instance, keys),
    )


def _last_activity(instance: DagsterInstance | None, keys: Sequence[AssetKey]) -> dt.datetime | None:
    if instance is None or not keys:
        return None
    events: Any = instance.get_latest_materialization_events(keys)
    stamps = [e.timestamp for e in events.values() if e is not None]
    return dt.datetime.fromtimestamp(max(stamps), dt.UTC) if stamps else None


def _age(delta: dt.timedelta) -> str:
    if delta.days >= 1:
        return f"{delta.days}d"
    return f"{max(0, int(delta.total_seconds() // 3600))}h"
