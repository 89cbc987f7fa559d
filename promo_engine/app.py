"""The application factory: settings, database, the promo service, blueprints."""
from __future__ import annotations

from flask import Flask

from promo_engine.config import MAX_BODY_BYTES, Settings
from promo_engine.ledger.database import configure_engine, engine_options
from promo_engine.ledger.extensions import db


def create_app(settings: Settings | None = None, *, test_config: dict | None = None,
               registry=None) -> Flask:
    """Defaults, then the environment (`settings`), then `test_config`."""
    from promo_engine.api import bp as api_bp
    from promo_engine.core.registry import build_registry
    from promo_engine.metrics import init_metrics
    from promo_engine.service import PromoService

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        PROMO_SETTINGS=settings,
    )
    if test_config:
        app.config.update(test_config)
    if settings.trusted_proxies:
        # The address that per-address limits count (failed API authentications, portal
        # logins) is the client's, not the load balancer's.
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0,
                                x_host=0, x_port=0, x_prefix=0)
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    app_metrics = init_metrics(app)
    service = PromoService(settings, registry or build_registry())
    service.on_campaign_error = lambda campaign_id, campaign_type, exc: \
        app_metrics.campaign_errors.labels(campaign_type=campaign_type).inc()
    service.on_engine_loaded = lambda engine: app_metrics.open_campaigns.set(len(engine))
    app.extensions["promo"] = service
    if settings.api_rate_limit:
        from promo_engine.api.rate_limit import client_rate_limit
        app.extensions["promo_rate_limit"] = client_rate_limit(
            settings.api_rate_limit, service.redis, settings.redis_prefix)
    if service.publisher is not None:
        from sqlalchemy.orm import Session

        from promo_engine.coordination.broadcast import publish_after_commit
        publish_after_commit(Session, _current_publisher)
    app.register_blueprint(api_bp)
    from merchant_portal import init_portal
    init_portal(app)
    return app


def _current_publisher():
    from flask import current_app, has_app_context
    if not has_app_context():
        return None
    service = current_app.extensions.get("promo")
    return service.publisher if service is not None else None
