"""A run failure that reads as one clear message: the spec file first, then what happened and what to do.

Dagster prints a step failure's `Failure.description` as the first line of the error (in the event log, the UI and
`dagster asset materialize`) and shows no stack for a `Failure` raised `from None`. Table and export assets raise
`run_failure(...)` for the errors that are the spec's or the data's (a `WarehouseError` names the table, the broken
rule and the fix); anything else is a bug or an outage and keeps its traceback.

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


def run_failure(spec_file: Path | str, message: str, metadata: Mapping[str, Any] | None = None) -> Failure:
    """`<spec file>: <message>` as a `Failure`; the message should already say what to do."""
    return Failure(
        description=f"{spec_file}: {message}",
        metadata={K.SPEC_FILE: str(spec_file), **(metadata or {})},
        allow_retries=False,
    )


def warehouse_failure(
    spec_file: Path | str, exc: Exception, metadata: Mapping[str, Any] | None = None
) -> Failure:
    """A `WarehouseError` (a broken strategy rule, a breaking schema change, ...) as a run failure."""
    return run_failure(spec_file, str(exc), {K.ERROR: type(exc).__name__, **(metadata or {})})
