"""points lots, vouchers, cancels: the reward lifecycle

Points become lots (`points_lots`) whose every later change is a move
(`points_lot_moves`); vouchers get a row of state (`vouchers`); rewards rows gain a
`reason` for entries that are no reward (points spent, returned, expired), and an
expiry entry belongs to no event; users keep their pending points; a redemption records
the cancel that undid it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:48:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('points_lots',
    sa.Column('reward_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('debt_paid', sa.BigInteger(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pending', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reward_pk'], ['rewards.id'], name=op.f('fk_points_lots_reward_pk_rewards')),
    sa.PrimaryKeyConstraint('reward_pk', name=op.f('pk_points_lots'))
    )
    with op.batch_alter_table('points_lots', schema=None) as batch_op:
        batch_op.create_index('ix_points_lots_due', ['expires_at', 'reward_pk'], unique=False, postgresql_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'), sqlite_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'))
        batch_op.create_index('ix_points_lots_user_pending', ['user_id', 'available_at'], unique=False, postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))
        batch_op.create_index('ix_points_lots_maturing', ['available_at', 'reward_pk'], unique=False, postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))
        batch_op.create_index('ix_points_lots_user_spending', ['user_id', 'expires_at', 'reward_pk'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))

    op.create_table('vouchers',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('reward_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('min_amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_by_event_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reward_pk'], ['rewards.id'], name=op.f('fk_vouchers_reward_pk_rewards')),
    sa.ForeignKeyConstraint(['used_by_event_pk'], ['events.id'], name=op.f('fk_vouchers_used_by_event_pk_events')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_vouchers')),
    sa.UniqueConstraint('reward_pk', name=op.f('uq_vouchers_reward_pk'))
    )
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vouchers_used_by_event_pk'), ['used_by_event_pk'], unique=False)
        batch_op.create_index('ix_vouchers_user_id_issued', ['user_id', 'reward_pk'], unique=False)

    op.create_table('points_lot_moves',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('lot_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['entry_pk'], ['rewards.id'], name=op.f('fk_points_lot_moves_entry_pk_rewards')),
    sa.ForeignKeyConstraint(['lot_pk'], ['points_lots.reward_pk'], name=op.f('fk_points_lot_moves_lot_pk_points_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_lot_moves'))
    )
    with op.batch_alter_table('points_lot_moves', schema=None) as batch_op:
        batch_op.create_index('ix_points_lot_moves_entry', ['entry_pk'], unique=False)
        batch_op.create_index('ix_points_lot_moves_lot', ['lot_pk'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_by_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_events_cancelled_by_pk_events'), 'events', ['cancelled_by_pk'], ['id'])

    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=16), nullable=True))
        batch_op.alter_column('event_pk',
               existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
               nullable=True)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_points', sa.BigInteger(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('pending_points')

    with op.batch_alter_table('rewards', schema=None) as batch_op:
        batch_op.alter_column('event_pk',
               existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
               nullable=False)
        batch_op.drop_column('reason')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_events_cancelled_by_pk_events'), type_='foreignkey')
        batch_op.drop_column('cancelled_by_pk')

    with op.batch_alter_table('points_lot_moves', schema=None) as batch_op:
        batch_op.drop_index('ix_points_lot_moves_lot')
        batch_op.drop_index('ix_points_lot_moves_entry')

    op.drop_table('points_lot_moves')
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_index('ix_vouchers_user_id_issued')
        batch_op.drop_index(batch_op.f('ix_vouchers_used_by_event_pk'))

    op.drop_table('vouchers')
    with op.batch_alter_table('points_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_points_lots_user_spending', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.drop_index('ix_points_lots_user_pending', postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))
        batch_op.drop_index('ix_points_lots_maturing', postgresql_where=sa.text('pending'), sqlite_where=sa.text('pending'))
        batch_op.drop_index('ix_points_lots_due', postgresql_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'), sqlite_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'))

    op.drop_table('points_lots')
