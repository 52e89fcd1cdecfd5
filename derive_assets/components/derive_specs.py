"""`derive_assets.components.DeriveSpecs`: a specs directory as a Dagster component, for `dg` projects.

```yaml
# <project>/defs/derive/defs.yaml
type: derive_assets.components.DeriveSpecs
attributes:
  specs_dir: ../../../table_specs                   # relative to this file, or absolute
  translator: my_project.translators.TeamTranslator  # optional: a DeriveTranslator subclass
  translation:                                     # optional: Dagster asset attributes, for every asset
    tags: {team: "{{ node.dataset }}"}
post_processing: ...                               # Dagster's own, as for every component
```

It builds exactly what `derive_assets.definitions` builds (`build_definitions`: assets, checks, jobs, resources,
executor) from the same settings (`DeriveSettings.from_env()`), with `specs_dir` from the attribute. Without
`specs_dir` it is `DERIVE_SPECS_DIR`, else the project's `table_specs/`: the rule `derive_assets.definitions`
follows, which this repository's own `defs.yaml` relies on (the two entry points cannot load different specs).

A wrong `specs_dir` or `translator` is refused while the component loads, with the `defs.yaml` line and the fix
(Dagster's `ResolutionException`, which `dg check defs` prints under the line it points at).
"""

# No `from __future__ import annotations`: Dagster's Resolvable reads these annotations at runtime.
import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from dagster import Definitions
from dagster.components import (
    Component,
    ComponentLoadContext,
    ComponentTypeSpec,
    ResolutionContext,
    Resolvable,
    Resolver,
)
from dagster.components.resolved.errors import ResolutionException
from dagster.components.utils.translation import TranslationFnResolver

from derive_assets.components.translation import TranslatedAttributes, TranslationFn
from derive_assets.settings import DeriveSettings
from derive_assets.translator import DeriveNode, DeriveTranslator

TRANSLATOR_EXAMPLE = "my_project.translators.TeamTranslator"


def _refused(context: ResolutionContext, problem: str, fix: str, short: str) -> ResolutionException:
    """One paragraph: the defs.yaml line (when loaded from YAML, marked with `short`), the attribute, what is wrong
    and how to fix it."""
    where = ""
    tree = context.source_position_tree
    if tree is not None:
        source = tree.source_error(yaml_path=context.path, inline_error_message=short, value_error=True)
        where = f"{source.file_name}:{source.start_line_no} - {source.location}\n{source.snippet}\n"
    attribute = ".".join(str(p) for p in context.path) or "attribute"
    return ResolutionException(f"{where}{attribute}: {problem}; {fix}")


def resolve_specs_dir(context: ResolutionContext, value: str) -> Path:
    """`specs_dir` relative to the `defs.yaml` that names it; an existing directory."""
    text = context.resolve_value(value, as_type=str)
    path = context.resolve_source_relative_path(text)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise _refused(
            context,
            f"{text!r} is {path}, which {what}",
            "set specs_dir to the directory of the spec YAML files, relative to this defs.yaml or absolute",
            what,
        )
    return path


def resolve_translator(context: ResolutionContext, value: str) -> DeriveTranslator:
    """`translator`: the import path of a `DeriveTranslator` subclass (`package.module.Class` or
    `package.module:Class`), made with no arguments."""
    path = context.resolve_value(value, as_type=str).strip()
    fix = f"give the import path of a DeriveTranslator subclass, e.g. {TRANSLATOR_EXAMPLE}"
    module_name, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not module_name or not name:
        raise _refused(context, f"{path!r} is not an import path", fix, "not an import path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _refused(
            context, f"cannot import {module_name} ({type(exc).__name__}: {exc})", fix, "cannot import"
        ) from None
    found = getattr(module, name, None)
    if found is None:
        raise _refused(context, f"{module_name} has no {name}", fix, f"no {name} in {module_name}")
    if not (isinstance(found, type) and issubclass(found, DeriveTranslator)):
        raise _refused(
            context,
            f"{path} is not a subclass of derive_assets.translator.DeriveTranslator",
            fix,
            "not a translator",
        )
    try:
        return found()
    except TypeError as exc:
        raise _refused(
            context,
            f"{path}() cannot be made without arguments ({exc})",
            "give the class defaults for every argument, or subclass it with them",
            "needs arguments",
        ) from None


@dataclass
class DeriveSpecs(Component, Resolvable):
    """Derive table specs as Dagster assets: every source table, SQL table, Python table and online export of a
    specs directory, with their checks, jobs and resources (the same as `derive_assets.definitions`).

    `specs_dir` (relative to this defs.yaml; default `DERIVE_SPECS_DIR`, else the project's `table_specs/`),
    `translator` (import path of a `DeriveTranslator` subclass: keys, groups, conditions) and `translation` (Dagster
    asset attributes for every asset, templated on `{{ node }}`: kind, ref, dataset).
    """

    specs_dir: Annotated[
        Path | None,
        Resolver(
            resolve_specs_dir,
            model_field_type=str,
            description="The spec YAML directory, relative to this defs.yaml or absolute; default "
            "DERIVE_SPECS_DIR, else table_specs/ of the Derive project.",
            examples=["../../../table_specs"],
        ),
    ] = None
    translator: Annotated[
        DeriveTranslator | None,
        Resolver(
            resolve_translator,
            model_field_type=str,
            description="Import path of a DeriveTranslator subclass (made with no arguments) that decides keys, "
            "deps, groups, tags, conditions and checks.",
            examples=[TRANSLATOR_EXAMPLE],
        ),
    ] = None
    translation: (
        Annotated[TranslationFn, TranslationFnResolver[DeriveNode](lambda node: {"node": node})] | None
    ) = None
    """Asset attributes for every asset, templated on `node` (`node.kind`, `node.ref`, `node.dataset`) and
    `spec`; `tags` and `metadata` are merged, the rest replaces the translator's (`components/translation.py`)."""

    @classmethod
    def get_spec(cls) -> ComponentTypeSpec:
        return ComponentTypeSpec(
            tags=["derive", "sql", "replication"],
            produces=["asset", "asset_check", "job", "sensor", "resource"],
        )

    def settings(self) -> DeriveSettings:
        """`DeriveSettings.from_env()`, with the `specs_dir` attribute when it is set."""
        settings = DeriveSettings.from_env()
        if self.specs_dir is None:
            return settings
        return dataclasses.replace(settings, specs_dir=self.specs_dir)

    def derive_translator(self) -> DeriveTranslator:
        """The `translator` (or Derive's default), with the `translation` attributes over it."""
        translator = self.translator or DeriveTranslator()
        if self.translation is None:
            return translator
        return TranslatedAttributes(translator, self.translation)

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        from derive_assets.factory.build import build_definitions

        return build_definitions(self.settings(), translator=self.derive_translator())
