"""a subscription's language: its emails are written in en, hy or ru

Revision ID: 0008_subscription_language
Revises: 0007_one_summary_per_moment
Create Date: 2026-12-06 23:30:00

Subscriptions made before this get English, as their emails were.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_subscription_language"
down_revision = "0007_one_summary_per_moment"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), nullable=False, server_default="en")
        )
        batch_op.create_check_constraint(
            op.f("ck_subscriptions_language_known"), "language IN ('en', 'hy', 'ru')"
        )


def downgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_subscriptions_language_known"), type_="check")
        batch_op.drop_column("language")
