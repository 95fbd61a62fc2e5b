"""APScheduler's job table, created here

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 02:00:00

APScheduler creates its table when a scheduler starts, with a check-then-create that is not atomic:
two app processes starting at once on a fresh PostgreSQL database both tried CREATE TABLE and one
died. Created by the migration (in APScheduler 3's own layout), the table is there before any
scheduler starts, and APScheduler's check finds it.
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('apscheduler_jobs'):
        return  # a database whose scheduler already created it
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_apscheduler_jobs_next_run_time', 'apscheduler_jobs', ['next_run_time'])


def downgrade() -> None:
    op.drop_index('ix_apscheduler_jobs_next_run_time', table_name='apscheduler_jobs')
    op.drop_table('apscheduler_jobs')
