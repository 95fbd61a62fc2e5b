"""Training runs have a kind: a fine-tune of the network, or a head on the cached embeddings

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), nullable=False, server_default="finetune"))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("kind")
