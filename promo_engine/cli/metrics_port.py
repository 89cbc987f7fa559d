"""`--metrics-port` of the commands that run outside the API's workers (`consume`,
`webhooks run`): their own Prometheus endpoint, since no worker's /metrics sees them."""
from __future__ import annotations

import sys

import click


def serve_metrics(app, host: str, port: int | None, command: str) -> None:
    """Serve `app`'s metrics at http://host:port/metrics from a thread, or exit 1 with one
    line when the port cannot be had. Nothing without a port."""
    if port is None:
        return
    from prometheus_client import start_http_server

    from promo_engine.metrics import metrics
    try:
        start_http_server(port, addr=host, registry=metrics(app).registry)
    except OSError as exc:
        click.echo(f"promo-engine {command}: cannot serve metrics on {host}:{port} "
                   f"({exc.strerror or exc}): stop what runs there or choose another with "
                   "--metrics-port", err=True)
        sys.exit(1)
