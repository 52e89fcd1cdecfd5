"""Pyright's proof that each engine conforms to the protocols it is used through (this module runs nothing).

`make lint` type-checks `resources/`; these assignments fail it when an engine loses a method of `Warehouse`
(what the factory calls), of `Engine` (what `resources.strategy` calls) or of `Session` (its per-run primitives),
or when a signature drifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from resources.bigquery_calls import Calls
    from resources.bigquery_warehouse import BigQuerySession, BigQueryWarehouse
    from resources.duckdb_warehouse import DuckDBSession, DuckDBWarehouse
    from resources.engine import Engine, Session
    from resources.warehouse import Warehouse

    def _duckdb(con: duckdb.DuckDBPyConnection) -> None:
        warehouse: Warehouse = DuckDBWarehouse(path="")
        engine: Engine = DuckDBWarehouse(path="")
        session: Session = DuckDBSession(con)
        del warehouse, engine, session

    def _bigquery(calls: Calls) -> None:
        warehouse: Warehouse = BigQueryWarehouse(project="p")
        engine: Engine = BigQueryWarehouse(project="p")
        session: Session = BigQuerySession(calls, None)
        del warehouse, engine, session
