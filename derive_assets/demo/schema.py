"""The source tables of the demo (`table_specs/sources/*.yaml` describes them), in SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection


def _timestamp() -> sa.types.TypeEngine[datetime]:
    """`timestamptz` on PostgreSQL, `DATETIME(6)` on MySQL (plain DATETIME drops microseconds), else text."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _id(name: str, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.BigInteger, primary_key=primary_key, autoincrement=False, nullable=not primary_key
    )


def source_tables() -> dict[str, tuple[sa.Table, ...]]:
    """The tables of each source, each source on its own MetaData (they live in different databases)."""
    accounts, orders, payments = sa.MetaData(), sa.MetaData(), sa.MetaData()
    ts = _timestamp
    return {
        "accounts": (
            sa.Table(
                "auth", accounts, _id("user_id", True), sa.Column("email", sa.String(255), nullable=False),
                sa.Column("created_at", ts()), sa.Column("updated_at", ts()), sa.Column("deleted_at", ts()),
            ),
        ),
        "orders": (
            sa.Table(
                "orders", orders, _id("order_id", True), _id("user_id"), sa.Column("status", sa.String(16)),
                sa.Column("amount", sa.Numeric(12, 2)), sa.Column("created_at", ts()),
                sa.Column("updated_at", ts()),
            ),
        ),
        "payments": (
            sa.Table(
                "payments", payments, _id("payment_id", True), _id("order_id"), _id("user_id"),
                sa.Column("amount", sa.Numeric(12, 2)), sa.Column("currency", sa.String(3)),
                sa.Column("method", sa.String(16)), sa.Column("status", sa.String(16)),
                sa.Column("paid_at", ts()), sa.Column("updated_at", ts()),
            ),
        ),
    }  # fmt: skip


def recreate(conn: Connection, tables: Sequence[sa.Table]) -> None:
    """Drop and create without indexes: building the `updated_at` indexes after the bulk load is faster."""
    for table in tables:
        table.drop(conn, checkfirst=True)
        table.create(conn)


def create_indexes(conn: Connection, tables: Sequence[sa.Table]) -> None:
    for table in tables:
        sa.Index(f"ix_{table.name}_updated_at", table.c.updated_at).create(conn)
