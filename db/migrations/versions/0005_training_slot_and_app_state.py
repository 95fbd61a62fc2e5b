"""training slot, worker heartbeat, app state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 20:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.add_column(sa.Column('active_slot', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('worker_host', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('worker_pid', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
    # The newest run still active takes the slot; start-up recovery decides whether it is alive.
    op.execute(
        "UPDATE training_runs SET active_slot = 1 WHERE id = (SELECT max(id) FROM training_runs "
        "WHERE status IN ('queued', 'running', 'cancelling'))"
    )
    op.create_index('ix_training_runs_active_slot', 'training_runs', ['active_slot'], unique=True)
    op.create_table('app_state',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('app_state')
    op.drop_index('ix_training_runs_active_slot', table_name='training_runs')
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('worker_pid')
        batch.drop_column('worker_host')
        batch.drop_column('active_slot')
