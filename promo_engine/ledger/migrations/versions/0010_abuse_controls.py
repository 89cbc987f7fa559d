"""abuse controls: devices, risk counters, denylist, holds, risk policy, erasures

Events keep the device they name (`device_id`, purged after PROMO_RETENTION_DAYS). A
device's row is the lock its events take after the user's, so `limits.per_device` and the
risk policy's per-device caps are exact; `risk_counters` and `device_day_users` hold what
the policy counts; `reward_holds` the rewards held for review; `denylist` and its history;
the risk policy in force; and the record of erasures, without the erased ids.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 00:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('denylist',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('added_by', sa.String(length=120), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'value', name=op.f('pk_denylist'))
    )
    op.create_table('denylist_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_denylist_changes'))
    )
    op.create_table('device_campaign_daily_usage',
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('campaign_id', 'device_id', 'day', name=op.f('pk_device_campaign_daily_usage'))
    )
    op.create_table('device_campaign_usage',
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('campaign_id', 'device_id', name=op.f('pk_device_campaign_usage'))
    )
    op.create_table('device_day_users',
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'day', 'user_id', name=op.f('pk_device_day_users'))
    )
    op.create_table('devices',
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_devices'))
    )
    op.create_table('risk_counters',
    sa.Column('subject', sa.String(length=140), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('rewarded_events', sa.Integer(), nullable=False),
    sa.Column('reward_minor', sa.BigInteger(), nullable=False),
    sa.Column('cashback_minor', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('subject', 'period', name=op.f('pk_risk_counters'))
    )
    op.create_table('risk_policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('spec_hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_policy'))
    )
    op.create_table('user_erasures',
    sa.Column('pseudonym', sa.String(length=64), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.PrimaryKeyConstraint('pseudonym', name=op.f('pk_user_erasures'))
    )
    op.create_table('reward_holds',
    sa.Column('reward_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=120), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['reward_pk'], ['rewards.id'], name=op.f('fk_reward_holds_reward_pk_rewards')),
    sa.PrimaryKeyConstraint('reward_pk', name=op.f('pk_reward_holds'))
    )
    with op.batch_alter_table('reward_holds', schema=None) as batch_op:
        batch_op.create_index('ix_reward_holds_status_held_at', ['status', 'held_at'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device_id', sa.String(length=128), nullable=True))
        batch_op.create_index('ix_events_device_id', ['device_id'], unique=False, postgresql_where=sa.text('device_id IS NOT NULL'), sqlite_where=sa.text('device_id IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_device_id', postgresql_where=sa.text('device_id IS NOT NULL'), sqlite_where=sa.text('device_id IS NOT NULL'))
        batch_op.drop_column('device_id')

    with op.batch_alter_table('reward_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_reward_holds_status_held_at')

    op.drop_table('reward_holds')
    op.drop_table('user_erasures')
    op.drop_table('risk_policy')
    op.drop_table('risk_counters')
    op.drop_table('devices')
    op.drop_table('device_day_users')
    op.drop_table('device_campaign_usage')
    op.drop_table('device_campaign_daily_usage')
    op.drop_table('denylist_changes')
    op.drop_table('denylist')
