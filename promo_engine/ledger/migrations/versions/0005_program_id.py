"""program id: which program database a Redis prefix's counters belong to

Two program databases given the same PROMO_REDIS_PREFIX would share budget counters, and
each one's reconciliation would rebuild them from its own ledger alone, below what the
other has spent. Every database gets a random id, which the first reservation under a
prefix records in Redis and every later reservation and reconciliation checks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:40:00
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('program_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('program_id', sa.String(length=32), nullable=True))
    program_id = secrets.token_hex(16)
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE program_state SET program_id = :id WHERE program_id IS NULL"),
                 {"id": program_id})
    # The row is otherwise made by the first campaign change; the id must exist before.
    bind.execute(sa.text(
        "INSERT INTO program_state (id, campaigns_revision, scheduler_fence, program_id) "
        "SELECT 1, 0, 0, :id WHERE NOT EXISTS (SELECT 1 FROM program_state WHERE id = 1)"),
        {"id": program_id})


def downgrade() -> None:
    with op.batch_alter_table('program_state', schema=None) as batch_op:
        batch_op.drop_column('program_id')
