"""Run one Derive asset (by key) in this process, optionally with a fault point armed; used by the crash-safety
tests.

    DAGSTER_HOME=... python tests/faults/runner.py --specs DIR --home DIR --asset DATASET/NAME [--partition KEY]
        [--fault P]

The Dagster instance is the persistent one under `DAGSTER_HOME`, so a killed run stays in its run storage and the
next run (in another process) reads the watermarks it left. Exit codes: 0 the run succeeded, 1 it failed, 3 a fault
was armed but never fired (the run finished), -9 (SIGKILL) the fault fired.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `faults`

from dagster import AssetKey, DagsterInstance

from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings
from faults import points

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", required=True, type=Path)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--asset", required=True, help="the asset key, as the UI writes it: dataset/name")
    parser.add_argument("--partition")
    parser.add_argument("--fault", choices=sorted(points.POINTS))
    args = parser.parse_args(argv)
    if args.fault:
        points.arm(args.fault)
    defs = build_definitions(DeriveSettings(specs_dir=args.specs, home=args.home))
    with DagsterInstance.get() as instance:
        result = materialize_keys(
            defs,
            [AssetKey.from_user_string(args.asset)],
            instance=instance,
            partition_key=args.partition,
            run_config=QUIET,
        )
    print(f"run {result.run_id} success={result.success}")
    if args.fault:
        return 3
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
