"""a subscription's owner: the token that made it (readers manage their own)

Revision ID: 0010_subscription_owners
Revises: 0009_webhooks
Create Date: 2026-12-07 00:00:00

Subscriptions made before this have no owner: only admins see and manage them, as
before (`created_by` stays the audit's "who made it"; the owner decides who sees it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_subscription_owners"
down_revision = "0009_webhooks"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_token_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_subscriptions_owner_token_id_api_tokens"),
            "api_tokens",
            ["owner_token_id"],
            ["id"],
        )
        batch_op.create_index("ix_subscriptions_owner", ["owner_token_id"], unique=False)


def downgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_owner")
        batch_op.drop_constraint(
            op.f("fk_subscriptions_owner_token_id_api_tokens"), type_="foreignkey"
        )
        batch_op.drop_column("owner_token_id")
