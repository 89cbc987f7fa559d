"""Coordination through Redis: budget reservations, the replay cache, broadcasts of changes
to every worker, and the scheduler's leader lease.

Redis holds what must be shared between processes and hosts at microsecond cost; the
database stays the record. It may import only the core; it knows nothing of the ledger's
tables (what it needs from them is passed in).
"""
