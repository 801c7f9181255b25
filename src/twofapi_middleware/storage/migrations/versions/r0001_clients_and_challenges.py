"""Clients and their pending challenges.

This is the shape before the first release; it is kept so that the upgrade
path to schema version 1 is exercised by the tests.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    # MySQL and MariaDB compare strings case-insensitively by default, which
    # would let "Alice" and "alice" collide; identifiers are case-sensitive.
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql", "mariadb")


def _bytes(length: int) -> sa.types.TypeEngine[bytes]:
    # Kept in the row on MySQL and MariaDB, where BLOBs live apart.
    varbinary = mysql.VARBINARY(length)
    return sa.LargeBinary(length).with_variant(varbinary, "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "twofapi_clients",
        sa.Column("client_id", _identifier(128), primary_key=True),
        sa.Column("reference_id", _identifier(128), nullable=False),
        sa.Column("commitment", _bytes(64), nullable=False),
        sa.Column("commitment_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recovery_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        sa.Column("lockout_streak", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.Double, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_table(
        "twofapi_challenges",
        sa.Column("challenge_id", _identifier(128), primary_key=True),
        sa.Column("client_id", _identifier(128), nullable=False, unique=True),
        sa.Column("nonce", _bytes(64), nullable=False),
        sa.Column("channel_binding", _bytes(64), nullable=False),
        sa.Column("commitment_version", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index(
        "ix_twofapi_challenges_expires_at", "twofapi_challenges", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_table("twofapi_challenges")
    op.drop_table("twofapi_clients")
