"""user counters keyed by user first

The ledger reads all of a user's campaign counters on every event (`WHERE user_id = ...`).
With the primary keys led by campaign_id no index served that read, and PostgreSQL scanned
both tables whole on every event, a cost that grew with the number of users. Led by user_id
(and for daily counters, then by day), the same keys serve it, and still the upserts and the
refunds' updates, which name every key column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 09:40:00
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _rekey(table: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(f'pk_{table}', type_='primary')
        batch_op.create_primary_key(f'pk_{table}', columns)


def upgrade() -> None:
    _rekey('user_campaign_usage', ['user_id', 'campaign_id'])
    _rekey('user_campaign_daily_usage', ['user_id', 'day', 'campaign_id'])


def downgrade() -> None:
    _rekey('user_campaign_daily_usage', ['campaign_id', 'user_id', 'day'])
    _rekey('user_campaign_usage', ['campaign_id', 'user_id'])
