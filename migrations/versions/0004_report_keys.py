"""reports carry their idempotency key and fingerprint; the claims table goes

Revision ID: 0004_report_keys
Revises: 0003_subscriptions
Create Date: 2026-11-29 10:30:00

A report's key (`client_id`) and the fingerprint of what was sent with it move onto the
report itself, under a unique (token, key) constraint: a second report for one token's
key can no longer be stored, whatever the timing. The claims table is dropped.

Keys held by more than one report (a claim taken over while its first request was still
running could store two) are resolved before the constraint is made: the report the
claim names (the one its sender was answered with) keeps the key; the others are kept,
as every report is, but without a key. Their ids are logged.
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0004_report_keys"
down_revision = "0003_subscriptions"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade():
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))

    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE reports SET fingerprint = (SELECT c.fingerprint FROM idempotency_records c "
            "WHERE c.report_id = reports.id AND c.token_id = reports.token_id "
            "AND c.key = reports.client_id)"
        )
    )
    # Every report that shares its token and key with another, but the one the claim
    # names (or, with no claim naming any, the first).
    extra = (
        bind.execute(
            sa.text(
                "SELECT r.id FROM reports r WHERE r.client_id IS NOT NULL AND EXISTS ("
                "  SELECT 1 FROM reports o WHERE o.token_id = r.token_id AND o.client_id = r.client_id"
                "  AND o.id <> r.id AND ("
                "    (o.fingerprint IS NOT NULL AND r.fingerprint IS NULL)"
                "    OR ((o.fingerprint IS NULL) = (r.fingerprint IS NULL) AND o.id < r.id)))"
            )
        )
        .scalars()
        .all()
    )
    if extra:
        log.warning(
            "reports sharing an idempotency key with another: their key is removed",
            extra={"report_ids": list(extra)},
        )
        bind.execute(
            sa.text(
                "UPDATE reports SET client_id = NULL, fingerprint = NULL WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": list(extra)},
        )

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_reports_token_key", ["token_id", "client_id"])
    op.drop_table("idempotency_records")


def downgrade():
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_idempotency_records_report_id_reports")
        ),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_idempotency_records_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint("token_id", "key", name="uq_idempotency_records_token_key"),
    )
    op.execute(
        "INSERT INTO idempotency_records "
        "(token_id, key, fingerprint, claimed_at, response_status, report_id) "
        "SELECT token_id, client_id, fingerprint, received_at, 201, id FROM reports "
        "WHERE client_id IS NOT NULL AND fingerprint IS NOT NULL"
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reports_token_key", type_="unique")
        batch_op.drop_column("fingerprint")
