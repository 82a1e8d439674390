"""outcomes: an analysis or a record can be "not interpretable", with its reasons

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analysis", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=32), server_default="judged", nullable=False)
        )
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=True))
    with op.batch_alter_table("record_result", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=32), server_default="judged", nullable=False)
        )
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("ood_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("record_result", schema=None) as batch_op:
        batch_op.drop_column("ood_score")
        batch_op.drop_column("reasons")
        batch_op.drop_column("outcome")
    with op.batch_alter_table("analysis", schema=None) as batch_op:
        batch_op.drop_column("reasons")
        batch_op.drop_column("outcome")
