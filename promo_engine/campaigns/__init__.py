"""The campaign lifecycle: the YAML schema and files marketing writes, the campaign store,
guarded status transitions, the scheduler that opens and closes campaigns, and the
reconciliation of budget counters it runs.

It may import the ledger, coordination and the core, never the interfaces above it.
"""
