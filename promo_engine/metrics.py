"""Prometheus metrics: one registry per app (so apps and tests never share counters).

Under `promo-engine serve`, every worker process writes its samples to a shared directory
(prometheus-client's multiprocess mode, switched on by `enable_multiprocess` before the
workers start), and /metrics adds up all workers, whichever worker answers the scrape.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask, current_app, g, request
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               multiprocess, values)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION_KEY = "promo_metrics"

# Request latency buckets in seconds: the API answers in milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The application's metrics; record with e.g. `metrics().events.labels(...).inc()`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("promo_events_total", "Events received, by type and outcome",
                              ["type", "outcome"], registry=r)
        self.rewards = Counter("promo_rewards_total", "Rewards granted, by kind",
                               ["kind"], registry=r)
        self.campaign_errors = Counter(
            "promo_campaign_errors_total",
            "Campaign evaluations that raised (the campaign was skipped), by campaign type",
            ["campaign_type"], registry=r)
        self.http_requests = Counter("promo_http_requests_total",
                                     "HTTP requests answered, by method, endpoint and status",
                                     ["method", "endpoint", "status"], registry=r)
        self.http_duration = Histogram("promo_http_request_duration_seconds",
                                       "Time to answer an HTTP request, by method and endpoint",
                                       ["method", "endpoint"], buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.open_campaigns = Gauge("promo_open_campaigns", "Campaigns open now",
                                    registry=r, multiprocess_mode="mostrecent")
        # `promo-engine consume` (stream ingestion, see consumer/stream.py)
        self.stream_messages = Counter(
            "promo_stream_messages_total",
            "Stream messages acknowledged, by outcome: recorded, replayed, dead_lettered, "
            "deleted (gone from the stream before it was read)", ["outcome"], registry=r)
        self.stream_claimed = Counter(
            "promo_stream_claimed_total",
            "Pending stream messages claimed from consumers idle longer than the claim time",
            registry=r)
        self.stream_pending = Gauge(
            "promo_stream_pending_messages",
            "Messages delivered to the consumer group and not yet acknowledged",
            registry=r, multiprocess_mode="mostrecent")
        self.stream_lag = Gauge(
            "promo_stream_lag_messages", "Messages in the stream not yet delivered to the group",
            registry=r, multiprocess_mode="mostrecent")
        self.stream_interrupted = Counter(
            "promo_stream_interrupted_total",
            "Consumer rounds interrupted by an unavailable database or Redis (or a bug): "
            "the failed message is not acknowledged, and retried after a pause", registry=r)
        # Webhook dispatchers (promo_engine/webhooks/dispatcher.py)
        self.webhook_deliveries = Counter(
            "promo_webhook_deliveries_total",
            "Webhook delivery attempts, by type and outcome: delivered, retrying (not "
            "accepted, tried again later), failed (not accepted, retry window over)",
            ["type", "outcome"], registry=r)
        self.webhook_oldest_pending = Gauge(
            "promo_webhook_oldest_pending_seconds",
            "How long the pending webhook delivery that came due first has been waiting to "
            "be sent: the dispatchers' lag (0 when none is waiting)",
            registry=r, multiprocess_mode="mostrecent")
        self.webhook_failures = Counter(
            "promo_webhook_failures_total",
            "Webhook deliveries marked failed (their retry window passed), by type",
            ["type"], registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text format: of every worker in multiprocess mode."""
        directory = os.environ.get(MULTIPROC_ENV)
        if directory and values.ValueClass is not values.MutexValue:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)


def init_app(app: Flask) -> Metrics:
    """Create the app's metrics and the request hooks; calling it again changes nothing."""
    existing = app.extensions.get(EXTENSION_KEY)
    if existing is not None:
        return existing
    app_metrics = Metrics()
    app.extensions[EXTENSION_KEY] = app_metrics
    # First of the before-request hooks, so that requests refused by a later hook
    # (authentication) are timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)
    return app_metrics


init_metrics = init_app


def metrics(app: Flask | None = None) -> Metrics:
    return (app or current_app).extensions[EXTENSION_KEY]


def _start_timer() -> None:
    g._promo_request_started = time.perf_counter()


def _observe(response):
    app_metrics = current_app.extensions.get(EXTENSION_KEY)
    if app_metrics is None:
        return response
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "<unmatched>"
    app_metrics.http_requests.labels(request.method, endpoint,
                                     str(response.status_code)).inc()
    started = g.get("_promo_request_started")
    if started is not None:
        app_metrics.http_duration.labels(request.method, endpoint).observe(
            time.perf_counter() - started)
    return response


def enable_multiprocess(directory: Path) -> None:
    """Switch this process (and the workers it forks) to multiprocess metrics.

    Call before any app is created in this process: metrics created earlier keep
    process-local values.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()


def mark_process_dead(pid: int) -> None:
    """For the server: a worker has exited (its live gauges no longer count)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
