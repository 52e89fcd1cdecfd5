"""The `dg` defs folder of this repository ([tool.dg.project] `defs_module`): `derive/defs.yaml` loads the specs
with the Derive component."""
