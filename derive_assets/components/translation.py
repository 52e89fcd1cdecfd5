"""The component's `translation` attribute: asset attributes from `defs.yaml`, applied over a `DeriveTranslator`.

Dagster's integration components (dbt, Sling, Fivetran) take a `translation` block of asset attributes (`group_name`,
`tags`, `key_prefix`, `automation_condition`, ...) that may template on the item being translated. Here the item is
the `DeriveNode` (`{{ node.kind }}`, `{{ node.ref }}`, `{{ node.dataset }}`) and `{{ spec }}` is the spec the
translator gave. `tags` and `metadata` are merged into the translator's (the asset bodies read Derive's own metadata
keys), every other attribute replaces the translator's.

A translation that changes keys keeps the graph connected: each node's deps are rewritten to the translated keys of
its upstream nodes, which the factory translates first.
"""

from collections.abc import Callable

from dagster import AssetCheckSpec, AssetDep, AssetKey, AssetSpec, AutomationCondition, PartitionsDefinition

from derive_assets.translator import DeriveNode, DeriveTranslator

TranslationFn = Callable[[AssetSpec, DeriveNode], AssetSpec]
"""What Dagster's `TranslationFnResolver` makes of a `translation` block: (the translator's spec, node) -> spec."""


class TranslatedAttributes(DeriveTranslator):
    """`base`'s specs with `translation` applied; every other answer (deps, group, condition, ...) is read from the
    translated spec, so whichever method the factory asks agrees with the spec it builds."""

    def __init__(self, base: DeriveTranslator, translation: TranslationFn) -> None:
        self._base = base
        self._translation = translation
        self._specs: dict[tuple[str, str], AssetSpec] = {}
        self._renamed: dict[AssetKey, AssetKey] = {}
        """The base translator's key -> the translated key, for every node translated so far."""

    def get_asset_spec(self, node: DeriveNode) -> AssetSpec:
        """Translated once per node (the factory may ask several methods for the same node)."""
        found = self._specs.get((node.kind, node.ref))
        if found is not None:
            return found
        for upstream in node.upstream:
            self.get_asset_spec(upstream)  # their renames first, whatever order the factory asks in
        base = self._base.get_asset_spec(node)
        spec = self._translation(base, node)
        spec = spec.replace_attributes(
            deps=[
                AssetDep(self._renamed.get(d.asset_key, d.asset_key), partition_mapping=d.partition_mapping)
                for d in spec.deps
            ]
        )
        self._renamed[base.key] = spec.key
        self._specs[(node.kind, node.ref)] = spec
        return spec

    def get_asset_key(self, node: DeriveNode) -> AssetKey:
        return self.get_asset_spec(node).key

    def get_deps(self, node: DeriveNode) -> list[AssetDep]:
        return list(self.get_asset_spec(node).deps)

    def get_group_name(self, node: DeriveNode) -> str:
        return self.get_asset_spec(node).group_name or self._base.get_group_name(node)

    def get_owners(self, node: DeriveNode) -> list[str]:
        return list(self.get_asset_spec(node).owners)

    def get_kinds(self, node: DeriveNode) -> set[str]:
        return set(self.get_asset_spec(node).kinds)

    def get_tags(self, node: DeriveNode) -> dict[str, str]:
        return {k: v for k, v in self.get_asset_spec(node).tags.items() if not k.startswith("dagster/kind/")}

    def get_description(self, node: DeriveNode) -> str | None:
        return self.get_asset_spec(node).description

    def get_metadata(self, node: DeriveNode) -> dict[str, object]:
        return dict(self.get_asset_spec(node).metadata)

    def get_partitions_def(self, node: DeriveNode) -> PartitionsDefinition | None:
        return self.get_asset_spec(node).partitions_def

    def get_code_version(self, node: DeriveNode) -> str | None:
        return self.get_asset_spec(node).code_version

    def get_automation_condition(self, node: DeriveNode) -> AutomationCondition | None:
        return self.get_asset_spec(node).automation_condition

    def get_check_specs(self, node: DeriveNode, key: AssetKey) -> list[AssetCheckSpec]:
        """The base translator's checks (Dagster's asset attributes have none to change)."""
        return self._base.get_check_specs(node, key)
