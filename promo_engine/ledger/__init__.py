"""The ledger: the database models, the event write path, storage set-up and migrations.

Every event, reward and idempotency record is written here, in one transaction per event.
It may import the core and the Redis coordination (budgets are reserved there before the
write), never the campaign lifecycle or the interfaces above it.
"""
