"""How an asset's requested windows become runs (backfill policy) and whether a failed step is tried again
(retry policy). The factories pass these to every `multi_asset`; `docs/operations.md` explains the choices.

Example:
    ```python
    @multi_asset(..., backfill_policy=backfill_policy(spec, partitions_def), retry_policy=step_retry_policy())
    ```
"""

from __future__ import annotations

from dagster import BackfillPolicy, Backoff, Jitter, PartitionsDefinition, RetryPolicy

from derive_assets.settings import step_retries
from derive_assets.specs.models import TableSpec

STEP_RETRY_DELAY_SECONDS = 30
"""The wait before the first retry; doubled for each further one (±50 % jitter, so that steps failed by one outage
do not all come back in the same second)."""


def backfill_policy(
    spec: TableSpec | None, partitions_def: PartitionsDefinition | None
) -> BackfillPolicy | None:
    """A windowed asset's policy: `multi_run(spec.backfill.max_partitions_per_run)` when the spec says so, else one
    run for the whole requested range (one statement over the union of its windows). None without partitions."""
    if partitions_def is None:
        return None
    if spec is not None and spec.backfill is not None:
        return BackfillPolicy.multi_run(max_partitions_per_run=spec.backfill.max_partitions_per_run)
    return BackfillPolicy.single_run()


def step_retry_policy() -> RetryPolicy | None:
    """The retry policy of every Derive step: `DERIVE_STEP_RETRIES` retries (`settings.step_retries`; None when 0,
    the default), production sets 2 (deployments/k8s).

    What it retries: a step that failed for a reason a later attempt may not meet, i.e. everything except a
    `Failure(allow_retries=False)` (a spec or data mistake, `factory/failures.py`) and a failed blocking check
    (Dagster fails that step outside the retry policy's reach). Each resource already retries its own transient
    errors within bounded time (the source preflight's attempts, the BigQuery client's retries, the online store's
    reconnects, DuckDB's lock wait), so the step retry is for outages that last minutes (a source database
    restarting, a warehouse incident): worth it in production, where nobody watches the run; locally a failed run
    should say why within seconds, hence the default 0.
    """
    retries = step_retries()
    if retries == 0:
        return None
    return RetryPolicy(
        max_retries=retries,
        delay=STEP_RETRY_DELAY_SECONDS,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )
