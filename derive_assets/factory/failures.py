"""A run failure that reads as one clear message: the spec file first, then what happened and what to do.

Dagster prints a step failure's `Failure.description` as the first line of the error, in the event log, the UI and
`dagster asset materialize` (the stack below it is Dagster's own frames: raised `from None`, nothing is chained).
Table and export assets raise these for the errors that are the spec's or the data's (a `WarehouseError` names
the table, the broken rule and the fix; an online store's outage says what is online and why a rerun is safe);
anything else is a bug and keeps its traceback.

Example:
    ```python
    try:
        result = warehouse.write(request)
    except WarehouseError as exc:
        raise warehouse_failure(table.path, exc) from None
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Failure

from derive_assets import metadata_keys as K
from resources.warehouse import WarehouseError, WarehouseUnavailable


def run_failure(
    spec_file: Path | str,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    allow_retries: bool | None = None,
) -> Failure:
    """`<spec file>: <message>` as a `Failure`; the message should already say what to do. `allow_retries=False`
    for a mistake a retry cannot fix (a retry policy then leaves the run failed)."""
    return Failure(
        description=f"{spec_file}: {message}",
        metadata={K.SPEC_FILE: str(spec_file), **(metadata or {})},
        allow_retries=allow_retries,
    )


def warehouse_failure(spec_file: Path | str, exc: WarehouseError) -> Failure:
    """A `WarehouseError` as a run failure. A broken strategy rule or a breaking schema change is not retried
    (the same data breaks it again); an unavailable warehouse (locked, unreachable) may be."""
    transient = isinstance(exc, WarehouseUnavailable)
    return run_failure(
        spec_file, str(exc), {K.ERROR: type(exc).__name__}, allow_retries=None if transient else False
    )
