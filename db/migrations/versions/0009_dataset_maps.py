"""The dataset map: a 2-D projection of the active images' features, stored after a rescore

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_maps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scorer", sa.String(length=200), nullable=False),
        sa.Column("pass_stamp", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("image_ids", sa.LargeBinary(), nullable=False),
        sa.Column("xy", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("dataset_maps")
