"""Every BigQuery API call of the warehouse, with bounded waits: an outage fails a run in seconds, not minutes.

The google client retries each call for up to 600 s by default, and `client.query` wraps job creation in a second
600 s retry, so an unreachable endpoint used to block a run for about ten minutes per call. `Calls` binds a client
to a `CallPolicy` and passes it to every request:

- `timeout`: the longest one HTTP request may take (the client's default is none);
- `retry`: the client's own predicate (connection errors, 429, 5xx, `rateLimitExceeded`, `backendError`) with
  the policy's deadline; errors it does not list (a bad query, a missing table) are never retried;
- job creation without the client's outer retry, and a failed *job* restarted only for the reasons BigQuery calls
  transient (`jobRateLimitExceeded`, `jobBackendError`, `jobInternalError`), within the same deadline;
- the resumable upload of a load job with as many retries as fit in the deadline.

`unreachable_errors` lists what an exhausted retry raises; the warehouse turns them into `WarehouseUnreachable`.
"""

from __future__ import annotations

import concurrent.futures
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY
from google.cloud.bigquery.table import RowIterator

T = TypeVar("T")

GOOGLE_ENDPOINT = "https://bigquery.googleapis.com"

TRANSIENT_JOB_REASONS = frozenset({"jobRateLimitExceeded", "jobBackendError", "jobInternalError"})

UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.RetryError,  # the deadline passed while a transient error repeated
    requests.exceptions.ConnectionError,  # the upload's own retries gave up
    requests.exceptions.Timeout,
    auth_exceptions.TransportError,  # credentials could not be refreshed
    concurrent.futures.TimeoutError,
)


@dataclass(frozen=True)
class CallPolicy:
    """How long BigQuery calls may wait: per request, and in all for one call with its retries."""

    timeout_seconds: float
    retry_deadline_seconds: float

    @property
    def retry(self) -> Retry:
        return DEFAULT_RETRY.with_deadline(self.retry_deadline_seconds)

    @property
    def kwargs(self) -> dict[str, Any]:
        """`retry=` and `timeout=` for a client method."""
        return {"retry": self.retry, "timeout": self.timeout_seconds}

    @property
    def upload_retries(self) -> int:
        """Retries of a resumable upload (waits 1, 2, 4, ... s) that fit in the deadline."""
        return max(0, int(math.log2(self.retry_deadline_seconds + 1)))


def _job_failed_transiently(exc: BaseException) -> bool:
    if not isinstance(exc, api_exceptions.GoogleAPICallError):
        return False
    errors = exc.errors or []
    return (
        bool(errors) and isinstance(errors[0], Mapping) and errors[0].get("reason") in TRANSIENT_JOB_REASONS
    )


class Calls:
    """A client whose every call waits at most as long as its policy says."""

    def __init__(self, client: bigquery.Client, policy: CallPolicy) -> None:
        self.client = client
        self.policy = policy

    @property
    def project(self) -> str:
        return str(self.client.project)

    def _job(self, start: Callable[[], T]) -> T:
        """Run `start` (create a job and wait for it), again when the job failed for a transient reason."""
        retry = Retry(predicate=_job_failed_transiently, initial=1.0, maximum=10.0)
        return retry.with_deadline(self.policy.retry_deadline_seconds)(start)()

    def query(self, sql: str, config: bigquery.QueryJobConfig) -> bigquery.QueryJob:
        """Create a query job (not waiting for it); dry runs come back finished."""
        return self.client.query(sql, job_config=config, job_retry=None, **self.policy.kwargs)

    def rows(self, sql: str, config: bigquery.QueryJobConfig, page_size: int | None = None) -> RowIterator:
        """Run a query to the end; the rows, fetched page by page with the same policy."""

        def start() -> Any:
            job = self.query(sql, config)
            return job.result(page_size=page_size, **self.policy.kwargs)

        return self._job(start)

    def get_table(self, ref: str) -> bigquery.Table:
        return self.client.get_table(ref, **self.policy.kwargs)

    def create_table(self, table: bigquery.Table, exists_ok: bool = False) -> bigquery.Table:
        return self.client.create_table(table, exists_ok=exists_ok, **self.policy.kwargs)

    def delete_table(self, ref: str) -> None:
        self.client.delete_table(ref, not_found_ok=True, **self.policy.kwargs)

    def copy_table(self, source: str, destination: str, write_disposition: str) -> None:
        """One copy job (free on BigQuery: no bytes scanned), waited for; `write_disposition` WRITE_TRUNCATE
        replaces an existing destination in one atomic step, WRITE_EMPTY creates it with the source's layout."""
        config = bigquery.CopyJobConfig(write_disposition=write_disposition)

        def start() -> None:
            job = self.client.copy_table(source, destination, job_config=config, **self.policy.kwargs)
            job.result(**self.policy.kwargs)

        self._job(start)

    def update_table(self, table: bigquery.Table, fields: list[str]) -> bigquery.Table:
        return self.client.update_table(table, fields, **self.policy.kwargs)

    def create_dataset(self, dataset: bigquery.Dataset) -> None:
        self.client.create_dataset(dataset, exists_ok=True, **self.policy.kwargs)

    def load_parquet(self, path: Path, ref: str, config: bigquery.LoadJobConfig) -> None:
        """One load job of a local file; `size=None` makes the upload resumable (it streams the file, and is the
        only kind the emulator accepts)."""

        def start() -> None:
            with path.open("rb") as fh:
                job = self.client.load_table_from_file(
                    fh,
                    ref,
                    size=None,
                    job_config=config,
                    num_retries=self.policy.upload_retries,
                    timeout=self.policy.timeout_seconds,
                )
            job.result(**self.policy.kwargs)

        self._job(start)


def describe_endpoint(api_endpoint: str | None) -> str:
    """The endpoint for messages: Google's when none is set; never with credentials in it."""
    if not api_endpoint:
        return GOOGLE_ENDPOINT
    try:
        parts = urlsplit(api_endpoint)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL at all: show nothing of it but its length
        return f"<an unparsable URL of {len(api_endpoint)} characters>"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else api_endpoint.split("@")[-1]


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def describe_cause(exc: BaseException) -> str:
    """The root of a transport failure in a few words, e.g. `[Errno 111] Connection refused`."""
    root: BaseException = exc
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        root = exc.cause
    text = str(root)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    if isinstance(root, requests.exceptions.Timeout | concurrent.futures.TimeoutError):
        return "the request timed out"
    return f"{type(root).__name__}: {text[:200]}"
