"""Webhooks out: endpoints (`endpoints.py`), Standard Webhooks signatures (`signing.py`) and
the dispatchers that send the outbox the ledger writes (`ledger/webhook_outbox.py`)."""
