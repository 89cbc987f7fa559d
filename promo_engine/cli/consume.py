"""`promo-engine consume`: apply the events of a Redis Stream, until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import re
import signal
import sys
import threading

import click

from promo_engine.cli import main
from promo_engine.cli.metrics_port import serve_metrics
from promo_engine.cli.scheduler import LOG_FORMAT, _require_current_schema
from promo_engine.config import Settings
from promo_engine.consumer.options import (DEAD_LETTER_SUFFIX, DEFAULT_BATCH, DEFAULT_BLOCK_MS,
                                           DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLIENT, DEFAULT_GROUP,
                                           DEFAULT_MAX_WAIT_MS, DEFAULT_STREAM, ConsumerOptions,
                                           default_consumer_name)

CONNECT_TIMEOUT_SECONDS = 2.0
# A blocking XREADGROUP answers after --block-ms; the socket waits that long and then some.
READ_TIMEOUT_MARGIN_SECONDS = 10.0
CLIENT_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"  # the ledger's client_id column: at most 64


def _client_id(_ctx, _param, value: str) -> str:
    if not re.fullmatch(CLIENT_PATTERN, value):
        raise click.BadParameter("must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return value


def _name(_ctx, _param, value: str | None) -> str | None:
    if value is not None and (not value or any(c.isspace() for c in value)):
        raise click.BadParameter("must be a non-empty Redis name without spaces")
    return value


@main.command("consume", epilog="""\b
Environment: DATABASE_URL, REDIS_URL (required), SECRET_KEY and the
  other settings of `promo-engine serve`.
Each message carries the event's JSON in its field `event`, exactly the
body of POST /v1/events:
  XADD promo:events '*' event '{"event_id": "pay-1", "type": "payment", ...}'
See docs/consumer.md.""")
@click.option("--stream", default=DEFAULT_STREAM, show_default=True, callback=_name,
              help="Redis Stream to read the events from.")
@click.option("--group", default=DEFAULT_GROUP, show_default=True, callback=_name,
              help="Consumer group; every event is applied by one consumer of the group.")
@click.option("--consumer", default=None, callback=_name,
              help="This consumer's name in the group [default: HOSTNAME-PID]. A consumer "
                   "restarted under the same name resumes its pending messages at once.")
@click.option("--client", "client_id", default=DEFAULT_CLIENT, show_default=True,
              callback=_client_id,
              help="Idempotency namespace of the stream's events (the ledger's client id): "
                   "event_ids are unique within it. Give an API client's key id to share "
                   "its namespace with the API.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=DEFAULT_BATCH,
              show_default=True,
              help="Messages read, applied in one transaction (on PostgreSQL, a savepoint "
                   "each) and acknowledged, at a time.")
@click.option("--max-wait-ms", type=click.IntRange(0, 10_000), default=DEFAULT_MAX_WAIT_MS,
              show_default=True,
              help="How long a batch that is not full waits for more messages once the "
                   "first arrived (0: apply what one read returns).")
@click.option("--block-ms", type=click.IntRange(1, 60_000), default=DEFAULT_BLOCK_MS,
              show_default=True,
              help="How long a read waits for new messages; also the longest a stop waits.")
@click.option("--claim-idle-ms", type=click.IntRange(100, 86_400_000),
              default=DEFAULT_CLAIM_IDLE_MS, show_default=True,
              help="Messages pending this long with another consumer are taken over (that "
                   "consumer is presumed dead). Keep it well above the time a batch takes.")
@click.option("--results-stream", default=None, callback=_name,
              help="Also add each message's response (status and JSON body, as the API "
                   "answers) to this stream.")
@click.option("--dead-letter-stream", default=None, callback=_name,
              help="Where messages that can never succeed go "
                   f"[default: STREAM{DEAD_LETTER_SUFFIX}].")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on this port (GET /metrics). [default: off]")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address to serve the metrics on.")
def consume_command(stream: str, group: str, consumer: str | None, client_id: str,
                    batch: int, max_wait_ms: int, block_ms: int, claim_idle_ms: int,
                    results_stream: str | None,
                    dead_letter_stream: str | None, metrics_port: int | None,
                    metrics_host: str) -> None:
    """Apply the events of a Redis Stream, each exactly once. Run as many as you like: a
    consumer group shares the messages out, and the pending messages of a consumer that
    dies are taken over by the others."""
    settings = Settings.from_env()
    if not settings.redis_url:
        click.echo("promo-engine: consume: REDIS_URL is not set; the events are read from a "
                   "Redis Stream", err=True)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    _require_current_schema(settings.database_url)

    import redis

    from promo_engine.app import create_app
    from promo_engine.consumer.stream import StreamConsumer
    from promo_engine.core.registry import build_registry
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service
    options = ConsumerOptions(stream=stream, group=group,
                              consumer=consumer or default_consumer_name(),
                              client_id=client_id, batch=batch, max_wait_ms=max_wait_ms,
                              block_ms=block_ms,
                              claim_idle_ms=claim_idle_ms, results_stream=results_stream,
                              dead_letter_stream=dead_letter_stream)
    app = create_app(settings, registry=build_registry())
    client = redis.Redis.from_url(settings.redis_url,
                                  socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                  socket_timeout=block_ms / 1000 + READ_TIMEOUT_MARGIN_SECONDS)
    stream_consumer = StreamConsumer(app, client, options)
    serve_metrics(app, metrics_host, metrics_port, "consume")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"promo-engine: consume: reading {options.stream} as {options.consumer} of "
               f"group {options.group}, events of client {options.client_id}; dead letters "
               f"to {options.dead_letters}", err=True)
    try:
        stream_consumer.run(stop)
    finally:
        client.close()
        promo_service(app).close()
        with app.app_context():
            db.engine.dispose()
    click.echo(f"promo-engine: consume: {options.consumer} stopped after "
               f"{stream_consumer.stats.summary()}", err=True)
