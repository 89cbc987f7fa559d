"""users.last_paid_at: the latest occurred_at of the user's payments

Campaigns can target users by their history (`conditions.user`), e.g. customers who have
not paid for 30 days. Every payment keeps the time of the user's last payment on the
user's row, under the lock it already holds, so an event reads it with the user's
counters at no extra cost. Users who paid before this revision get it from their recorded
payments, so a win-back campaign sees them as they are.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 22:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_paid_at', sa.DateTime(timezone=True), nullable=True))

    # Both databases store the instants of one column alike (SQLite as UTC text of one
    # fixed width), so max() is the latest instant on either.
    op.execute("UPDATE users SET last_paid_at = (SELECT max(e.occurred_at) FROM events e "
               "WHERE e.user_id = users.user_id AND e.type = 'payment')")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('last_paid_at')
