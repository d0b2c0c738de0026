"""The outbox's channel: a delivery goes to the camera's webhook or to the MQTT broker. Rows from before it are
webhooks.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # batch_alter_table: SQLite adds the column by copying the table, PostgreSQL with one ALTER TABLE.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("channel", sa.String(8), nullable=False, server_default="webhook"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("channel")
