"""Rate-limit counters and the count of failed recoveries: schema version 1.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    # Case-sensitive on MySQL and MariaDB too (see revision 0001).
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql", "mariadb")


def upgrade() -> None:
    # Clients enrolled before this revision have never failed a recovery.
    op.add_column(
        "twofapi_clients",
        sa.Column("recovery_failures", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "twofapi_counters",
        sa.Column("key", _key(255), primary_key=True),
        sa.Column("window_end", sa.Double, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_twofapi_counters_window_end", "twofapi_counters", ["window_end"]
    )


def downgrade() -> None:
    op.drop_table("twofapi_counters")
    op.drop_column("twofapi_clients", "recovery_failures")
