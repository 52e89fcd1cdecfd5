"""One replication run in its own process on the PostgreSQL-backed instance under `DAGSTER_HOME`, used by
test_postgres_instance.py to run two at once.

    DAGSTER_HOME=... python tests/integration/pg_instance_child.py --specs DIR --home DIR --asset DATASET/NAME
        --meet DIR --me NAME --other NAME

The run meets the other process inside its step: once it has read its watermark from the event log it writes
`<meet>/<me>` and waits for `<meet>/<other>` before it goes on. So both runs are inside their steps at the same
moment, and each writes the rest of its events (rows, materialization, success) while the other one does too.
Prints the run's id and the types of the events it emitted (JSON) on its last line; exit code 0 when the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance

from derive_assets.factory import replication_assets
from derive_assets.factory.build import build_definitions
from derive_assets.factory.runs import materialize_keys
from derive_assets.settings import DeriveSettings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
MEET_TIMEOUT_SECONDS = 120


def meet_inside_the_step(meet: Path, me: str, other: str) -> None:
    """Make the step wait for the other process's step right after it has read its stored watermark."""
    read_state = replication_assets._stored_state  # pyright: ignore[reportPrivateUsage]

    def read_then_meet(*args: Any, **kwargs: Any) -> Any:
        state = read_state(*args, **kwargs)
        (meet / me).write_text("in the step\n")
        deadline = time.monotonic() + MEET_TIMEOUT_SECONDS
        while not (meet / other).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{other}'s run never reached its step (waited {MEET_TIMEOUT_SECONDS} s)")
            time.sleep(0.05)
        return state

    replication_assets._stored_state = read_then_meet  # pyright: ignore[reportPrivateUsage]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", required=True, type=Path)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--asset", required=True, help="the asset key, as the UI writes it: dataset/name")
    parser.add_argument("--meet", required=True, type=Path)
    parser.add_argument("--me", required=True)
    parser.add_argument("--other", required=True)
    args = parser.parse_args(argv)
    meet_inside_the_step(args.meet, args.me, args.other)
    defs = build_definitions(DeriveSettings(specs_dir=args.specs, home=args.home))
    with DagsterInstance.get() as instance:
        result = materialize_keys(
            defs, [AssetKey.from_user_string(args.asset)], instance=instance, run_config=QUIET
        )
    # What the run itself saw of its events, to compare with what its event log in PostgreSQL holds.
    print(json.dumps({"run_id": result.run_id, "events": [e.event_type_value for e in result.all_events]}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
