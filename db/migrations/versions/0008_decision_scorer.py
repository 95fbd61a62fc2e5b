"""Decisions record the promoted model version and the scoring pass apart

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 17:20:00

Until now every decision stored the scoring pass's name (e.g. "heads:lite0-128+lite0-224:self_confidence")
in model_version, never the promoted model version serving when the expert decided. The pass moves to
its own column, `scorer`; model_version is left empty for those rows, since which version was serving
then was not recorded.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("scorer", sa.String(length=200), nullable=True))
    op.execute("UPDATE decisions SET scorer = model_version, model_version = NULL WHERE model_version IS NOT NULL")


def downgrade() -> None:
    op.execute("UPDATE decisions SET model_version = scorer WHERE model_version IS NULL")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("scorer")
