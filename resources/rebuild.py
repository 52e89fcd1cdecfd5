"""Rebuild a table on purpose (`WriteRequest.rebuild`): build it from scratch into a new table, then swap it in.

What `derive rebuild` and a Dagster `derive/full_refresh` run do, written once for every engine over the
`Session` primitives:

1. The run's rows are staged and checked exactly as for a write (`strategy._check_write`: NULL or duplicate
   merge keys, rows outside the run's window, NULL in a `not_null` column), with errors naming the table.
2. A new table `<name>__derive_rebuild_<8 hex>` in the same dataset is created from the spec (its columns, NOT
   NULL, partitioning, clustering and Derive's marker) and filled with the strategy (`strategy.run_strategy`;
   into an empty table every strategy inserts the run's rows). The old table is not compared with the spec: a
   rebuild is how a breaking change (a renamed column, a new partition key) is applied.
3. `Session.swap` puts the new table in the old one's place: DuckDB drops the old table and renames the new one
   inside the run's transaction (atomic); BigQuery uses copy jobs (`resources.bigquery_swap`: atomic when only
   the rows changed, through a backup otherwise).

A refusal or a failure anywhere leaves the old table as it was and drops the new one (DuckDB's rollback,
`Session.discard` elsewhere). A rebuild of a table that does not exist yet is a normal first write.

Row accounting, like `replace`: `rows_read` = rows staged, `rows_inserted` = rows in the new table,
`rows_deleted` = rows the old table held, `rows_updated` = 0; `extra["rebuilt"]` is True.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from resources import evolution, strategy
from resources.engine import Engine
from resources.partition_counts import partition_counts
from resources.warehouse import TargetTable, WriteRequest, WriteResult
from resources.warehouse_rules import check_row_source

if TYPE_CHECKING:
    import pyarrow as pa


REBUILD_MARK = "__derive_rebuild_"
"""Part of the name of the new table a rebuild fills (never a spec's table: spec names have no `__derive_`)."""
REBUILT = "rebuilt"
"""The `WriteResult.extra` key saying the run rebuilt the table."""


def rebuild_name(target: TargetTable) -> str:
    """`<name>__derive_rebuild_<8 hex>`: unique per run, in the target's dataset."""
    return f"{target.name}{REBUILD_MARK}{uuid.uuid4().hex[:8]}"


def rebuild(
    engine: Engine, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None = None
) -> WriteResult:
    """Build the table from scratch into a new table, then swap it in; a failure leaves the old table intact."""
    check_row_source(request, batches)
    strategy.check_delete_missing(request)
    target = evolution.spec_target(request.target, request.unique_key)
    plain = dataclasses.replace(request, target=target, rebuild=False)
    with engine.session() as s:
        exists = s.exists(target)
    if not exists:
        result = strategy.write(engine, plain, batches)
    else:
        result = _rebuild_existing(engine, plain, batches)
    result.extra[REBUILT] = True
    return result


def _rebuild_existing(
    engine: Engine, request: WriteRequest, batches: Iterable[pa.RecordBatch] | None
) -> WriteResult:
    caps = engine.CAPABILITIES
    target = request.target
    fresh = dataclasses.replace(target, name=rebuild_name(target))
    into = dataclasses.replace(request, target=fresh)
    with engine.session() as s:
        try:
            created = s.prepare(fresh)
            if request.sql is None:
                staged = s.stage_batches(target, batches or (), "rows")
            else:
                staged = s.stage_query(target, request.sql, request.params)
            result = strategy._check_write(s, request, staged)
            if staged.name:
                result.extra["staging_table"] = staged.name
            if not created:
                s.create(fresh)
            strategy.run_strategy(s, caps, into, staged, created, result)
            result.by_partition = partition_counts(s, request, staged, fresh)
            result.rows_updated = 0
            result.rows_deleted = s.swap(fresh, target)
        except BaseException:  # whatever stopped the rebuild (a refusal, an engine error, an interrupt)
            s.discard(fresh)
            raise
    return result
