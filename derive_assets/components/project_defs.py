"""The code location `dg` loads for this repository (`code_location_target_module` in pyproject.toml): the
definitions of its defs folder (`derive_assets/defs/`, one `defs.yaml` with the Derive component).

Not `load_from_defs_folder`: that also attaches, for the UI's component catalogue, a snapshot of every component
type installed in the environment, which imports each package's registry module (dagster-gcp's brings
google-cloud, pandas and grpc). Every step process of a run loads this module again, and that import alone took
it from 106 MB to 239 MB and doubled its load time (measured here, interleaved). The defs folder's own definitions,
with its component tree, are the same assets, checks, jobs, sensor and resources.
"""

from __future__ import annotations

from dagster import Definitions, definitions
from dagster.components.core.component_tree import ComponentTree

from derive_assets.settings import PROJECT_ROOT


@definitions
def defs() -> Definitions:
    tree = ComponentTree.for_project(path_within_project=PROJECT_ROOT)
    return Definitions.merge(tree.build_defs(tree.defs_module_path), Definitions(component_tree=tree))
