"""Blind audits, second opinions and class guidelines; decisions say why they were made

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("purpose", sa.String(length=20), nullable=True))
    op.create_table(
        "audits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("scorer", sa.String(length=200), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_members",
        sa.Column("audit_id", sa.Integer(), sa.ForeignKey("audits.id"), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("band", sa.Integer(), nullable=False),
        sa.Column("sampled", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("audit_id", "image_id"),
    )
    op.create_table(
        "blind_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("audit_id", sa.Integer(), sa.ForeignKey("audits.id"), nullable=True),
        sa.Column("shown_label", sa.String(length=200), nullable=True),
        sa.Column("first_decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("excluded_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("settled_decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_blind_tasks_image_id", "blind_tasks", ["image_id"])
    op.create_index("ix_blind_tasks_audit_id", "blind_tasks", ["audit_id"])
    op.create_index("ix_blind_tasks_first_decision_id", "blind_tasks", ["first_decision_id"])
    op.create_index("ix_blind_tasks_status_kind", "blind_tasks", ["status", "kind"])
    op.create_table(
        "blind_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("blind_tasks.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "user_id"),
    )
    op.create_index("ix_blind_answers_task_id", "blind_answers", ["task_id"])
    op.create_table(
        "class_guides",
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("example_ids", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("label"),
    )


def downgrade() -> None:
    op.drop_table("class_guides")
    op.drop_table("blind_answers")
    op.drop_table("blind_tasks")
    op.drop_table("audit_members")
    op.drop_table("audits")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("purpose")
