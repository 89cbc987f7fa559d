"""Where a stream consumer reads, as whom and how much at a time: the options of
`promo-engine consume` (see consumer/stream.py). Kept apart because the command line reads them
for its help, and this module imports nothing heavy."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

DEFAULT_STREAM = "promo:events"
DEFAULT_GROUP = "promo-engine"
# The ledger's client_id of stream events: their event_ids are unique within it. Give an API
# client's key id instead to share that client's idempotency namespace with the API.
DEFAULT_CLIENT = "stream"
DEAD_LETTER_SUFFIX = ":dead"
DEFAULT_BATCH = 100
DEFAULT_BLOCK_MS = 2000
# How long a batch that is not full yet waits for more messages once its first arrived.
DEFAULT_MAX_WAIT_MS = 20
DEFAULT_CLAIM_IDLE_MS = 30_000

MAX_CLAIM_INTERVAL_MS = 5000


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ConsumerOptions:
    """Where to read, as whom, and how much at a time (`promo-engine consume --help`)."""
    stream: str = DEFAULT_STREAM
    group: str = DEFAULT_GROUP
    consumer: str = field(default_factory=default_consumer_name)
    client_id: str = DEFAULT_CLIENT
    batch: int = DEFAULT_BATCH
    block_ms: int = DEFAULT_BLOCK_MS
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS
    claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS
    results_stream: str | None = None
    dead_letter_stream: str | None = None  # None: the stream's name + ":dead"

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_stream or self.stream + DEAD_LETTER_SUFFIX

    @property
    def claim_interval_seconds(self) -> float:
        """How often to look for claimable messages: a dead consumer's messages are taken
        over within claim_idle_ms plus this."""
        return min(self.claim_idle_ms / 2, MAX_CLAIM_INTERVAL_MS) / 1000
