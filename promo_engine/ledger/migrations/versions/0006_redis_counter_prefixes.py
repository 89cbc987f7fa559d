"""redis_counter_prefixes: the Redis prefixes whose counters this program database has begun

Redis alone cannot tell a prefix that is new from one that lost its data (a restart without
persistence, a FLUSHDB): both have no keys. After a data loss no counter may be rebuilt
until every reservation made before it has passed its deadline (the settle period); a new
deployment has none, and should not wait. The database remembers which prefixes it has
begun counting under, so that only a prefix it has never used, with an empty ledger, starts
without the wait.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('redis_counter_prefixes',
                    sa.Column('prefix', sa.String(length=200), nullable=False),
                    sa.Column('first_used_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('prefix'))


def downgrade() -> None:
    op.drop_table('redis_counter_prefixes')
