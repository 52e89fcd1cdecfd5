"""Definitions for an environment (`DERIVE_ENV=alice`, `derive build --env alice`): the same tables and
replications as production, written to shadow datasets under shadow asset keys, reading unchanged upstreams from
production.

What changes against production (everything else is the production asset, unchanged):

- keys: `alice__analytics/order_facts` (the first part of the translator's key gets the environment's prefix), so
  the environment's watermarks, code versions, partitions and checks live apart in the same event log;
- targets: `alice__analytics.order_facts`; the body writes nothing else (exports and Python tables are not part of
  an environment: they stay production assets, and an environment never writes the online store);
- no automation condition, schedule or sensor: an environment is built when someone asks for it;
- reads: each table the SQL reads is chosen when the run starts (`Environment.relations`): production's table when
  its spec is unchanged (the code version on production's table marker equals the checkout's), else the
  environment's own copy, which must exist with the checkout's version (`derive build --env` builds it first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetDep, AssetKey, AssetSpec

from derive_assets import metadata_keys as K
from derive_assets.environments import shadow_dataset, shadow_ref, validate_name
from resources.warehouse import Warehouse, WarehouseError

if TYPE_CHECKING:
    from sqlglot import exp  # sqlglot loads with the first run's SQL, not with the definitions


class EnvironmentReadError(WarehouseError):
    """A table of an environment reads an upstream whose spec changed, and the environment has no current copy."""

    def __init__(self, env: str, table: str, upstream: str, reason: str) -> None:
        self.env, self.table, self.upstream = env, table, upstream
        copy = shadow_ref(env, upstream)
        super().__init__(
            f"{shadow_ref(env, table)} reads {upstream}, whose spec differs from production's table, so it must "
            f"read the environment's copy {copy}, which {reason}. Build it first, in the same environment: "
            f"`derive build --env {env} {table.replace('.', '/')}` (it builds the changed tables a table reads first)."
        )


@dataclass(frozen=True)
class Environment:
    """One environment of a definitions build."""

    name: str
    versions: Mapping[str, str | None] = field(default_factory=dict)
    """Every table and replicated table of the checkout (`dataset.name`) -> its code version (the translator's):
    what decides, when a run starts, whether production's copy of an upstream is current."""

    def __post_init__(self) -> None:
        validate_name(self.name)

    def dataset(self, dataset: str) -> str:
        """`alice__analytics` for `analytics`."""
        return shadow_dataset(self.name, dataset)

    def ref(self, ref: str) -> str:
        return shadow_ref(self.name, ref)

    def key(self, key: AssetKey) -> AssetKey:
        """The environment's key of production key `key`: its first part prefixed."""
        return AssetKey([self.dataset(key.path[0]), *key.path[1:]])

    def asset_spec(self, spec: AssetSpec, shadowed: Mapping[AssetKey, AssetKey]) -> AssetSpec:
        """`spec` as the environment's asset: its key and the keys of its shadowed upstreams (`shadowed`:
        production key -> environment key) replaced, no automation, the environment's tag."""
        deps = [
            AssetDep(shadowed.get(dep.asset_key, dep.asset_key), partition_mapping=dep.partition_mapping)
            for dep in spec.deps
        ]
        return spec.replace_attributes(
            key=self.key(spec.key),
            deps=deps,
            automation_condition=None,
            tags={**spec.tags, K.ENV_TAG: self.name},
        )

    def relations(self, warehouse: Warehouse, table: str, reads: Iterable[str]) -> dict[str, str]:
        """What table `table` reads, when a run starts: each upstream ref -> the relation to read (production's
        ref, or the environment's copy), and `table` itself -> its copy (a custom check reads it). Raises
        `EnvironmentReadError` for a changed upstream without a current copy."""
        chosen, missing = self.planned_relations(warehouse, table, reads)
        if missing:
            upstream, reason = next(iter(missing.items()))
            raise EnvironmentReadError(self.name, table, upstream, reason)
        return chosen

    def planned_relations(
        self, warehouse: Warehouse, table: str, reads: Iterable[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """`relations`, and each changed upstream without a current copy -> why (`does not exist`, `was built
        from another version of its spec`) instead of an error; such an upstream maps to its copy's name."""
        chosen, missing = {table: self.ref(table)}, {}
        for upstream in reads:
            if upstream == table or upstream not in self.versions:
                continue  # itself, or not a Derive table of this checkout (a Python table: production's)
            version = self.versions[upstream]
            production = warehouse.describe(upstream)
            recorded = production.layout.code_version if production and production.layout else None
            if production is not None and (recorded is None or recorded == version):
                chosen[upstream] = upstream  # unchanged (or older than recorded versions): production's
                continue
            chosen[upstream] = self.ref(upstream)
            copy = warehouse.describe(self.ref(upstream))
            if copy is None:
                missing[upstream] = "does not exist"
            elif (copy.layout.code_version if copy.layout else None) != version:
                missing[upstream] = "was built from another version of its spec"
        return chosen, missing


def check_run_env(tags: Mapping[str, str], env: Environment | None, spec_file: Path | str) -> None:
    """A run tagged `derive/env=NAME` must run on NAME's definitions, and an environment's asset only in a run
    tagged for it or untagged: a tag alone never turns a production run into an environment's (it would write
    production), so a mismatch fails the step before anything is read or written."""
    from derive_assets.factory.failures import run_failure

    tagged = tags.get(K.ENV_TAG)
    name = env.name if env is not None else None
    if tagged is None or tagged == name:
        return
    location = f"environment '{name}'" if name else "production"
    raise run_failure(
        spec_file,
        f"the run is tagged {K.ENV_TAG}={tagged!r}, but this code location builds {location}; nothing was "
        f"written. Build environment '{tagged}' with `derive build <tables> --env {tagged}`, or a code location "
        f"started with DERIVE_ENV={tagged} (remove the tag to run {location})",
        allow_retries=False,
    )


def rewrite_tables(expression: exp.Expr, relations: Mapping[str, str]) -> exp.Expr:
    """A copy of `expression` whose `dataset.name` tables in `relations` read the relation given instead (aliases
    kept; a table without an alias gets its old name as alias, so `orders.amount` still resolves). Production
    (no relations) gets `expression` itself."""
    if not relations:
        return expression
    from sqlglot import exp

    def swap(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not node.args.get("db"):
            return node
        ref = f"{node.db}.{node.name}"
        target = relations.get(ref)
        if target is None or target == ref:
            return node
        dataset, name = target.split(".", 1)
        copy = node.copy()
        copy.set("db", exp.to_identifier(dataset))
        copy.set("this", exp.to_identifier(name))
        if not node.alias:
            copy.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
        return copy

    return expression.copy().transform(swap)
