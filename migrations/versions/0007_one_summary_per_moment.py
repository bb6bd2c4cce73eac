"""one on-demand summary per as_of: the same moment asked twice is one summary

Revision ID: 0007_one_summary_per_moment
Revises: 0006_sessions_and_suspensions
Create Date: 2026-11-29 12:50:00

Summaries asked for before this could repeat a moment (each request built its own).
Of each repeated moment one is kept (a ready one if any, else the first asked for);
deliveries that point at another are pointed at it, and the others are removed. They
were builds of the same moment, so no figure is lost.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_one_summary_per_moment"
down_revision = "0006_sessions_and_suspensions"
branch_labels = None
depends_on = None

INDEX = "uq_summaries_on_demand_as_of"


def upgrade():
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, as_of FROM summaries WHERE period IS NULL ORDER BY as_of, "
            "CASE status WHEN 'ready' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, requested_at"
        )
    ).all()
    kept = {}
    for summary_id, as_of in rows:
        if as_of not in kept:
            kept[as_of] = summary_id
            continue
        params = {"keep": kept[as_of], "drop": summary_id}
        connection.execute(
            sa.text("UPDATE deliveries SET summary_id = :keep WHERE summary_id = :drop"), params
        )
        connection.execute(sa.text("DELETE FROM summaries WHERE id = :drop"), params)
    with op.batch_alter_table("summaries", schema=None) as batch_op:
        batch_op.create_index(
            INDEX,
            ["as_of"],
            unique=True,
            sqlite_where=sa.text("period IS NULL"),
            postgresql_where=sa.text("period IS NULL"),
        )


def downgrade():
    with op.batch_alter_table("summaries", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
