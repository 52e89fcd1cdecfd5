"""A spec's `max_bytes_billed`: when a write's query is refused for the bytes it would process.

Two checks, both raising `BytesBilledLimitExceeded` before anything is written:

- before the write, the warehouse's own estimate (a BigQuery dry run: free) against the limit (`refuse_estimate`);
- during it, BigQuery's refusal of a query job that carries `maximum_bytes_billed` (`billing_refusal`), e.g. when
  the dry run could not estimate the query, or BigQuery bills more than it scans (at least 10 MB per table read).

An engine without estimates (DuckDB) never calls these: the limit has no effect there.

    >>> refuse_estimate(target, estimate=12_000_000_000)   # doctest: +SKIP
    BytesBilledLimitExceeded: analytics.big: a dry run estimates that the query processes 12,000,000,000 bytes ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from resources.warehouse import BytesBilledLimitExceeded, TargetTable

LIMIT_REASON = "bytesBilledLimitExceeded"
"""The `reason` BigQuery gives a job refused for its `maximumBytesBilled`."""

_REQUIRED = re.compile(r"(\d+) or higher required")
"""BigQuery's message names the bytes the job needs: `Query exceeded limit for bytes billed: 1000. 10485760 or
higher required.`"""


def exceeds(estimate: int | None, limit: int | None) -> bool:
    """True when there is a limit, an estimate, and the estimate is above the limit (equal is allowed, as on
    BigQuery); no estimate or no limit is never over."""
    return limit is not None and estimate is not None and estimate > limit


def refuse_estimate(target: TargetTable, estimate: int | None) -> None:
    """Raise `BytesBilledLimitExceeded` when `estimate` (bytes) is above `target.max_bytes_billed`."""
    if exceeds(estimate, target.max_bytes_billed):
        assert estimate is not None and target.max_bytes_billed is not None
        raise BytesBilledLimitExceeded(target.ref, estimate, target.max_bytes_billed, "estimate")


def billing_refusal(
    target: TargetTable, errors: Sequence[Any] | None, message: str
) -> BytesBilledLimitExceeded | None:
    """The error for a failed query job when BigQuery refused it for `maximumBytesBilled` (`errors` and `message`
    of a `GoogleAPICallError`), else None. The bytes BigQuery said it needs are read from the message."""
    limit = target.max_bytes_billed
    if limit is None:
        return None
    reasons = {e.get("reason") for e in errors or () if isinstance(e, Mapping)}
    if LIMIT_REASON not in reasons:
        return None
    texts = [message, *(str(e.get("message", "")) for e in errors or () if isinstance(e, Mapping))]
    required = next((int(m[1]) for m in map(_REQUIRED.search, texts) if m), None)
    return BytesBilledLimitExceeded(target.ref, required, limit, "bigquery")
