"""dashboard sessions ended at sign-out; subscriptions suspended after refusals

Revision ID: 0006_sessions_and_suspensions
Revises: 0005_import_jobs
Create Date: 2026-11-29 13:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0006_sessions_and_suspensions"
down_revision = "0005_import_jobs"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_dashboard_sessions_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("permanent_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("suspended_reason", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("suspended_reason")
        batch_op.drop_column("suspended_at")
        batch_op.drop_column("permanent_failures")
    op.drop_table("dashboard_sessions")
