"""Worker processes for the concurrency tests: each builds its own app (own connection
pool) and fires its share of requests from several threads at once, after a barrier."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor


def run_worker(database_url, key_id, secret, bodies, threads, barrier, results):
    from conftest import make_settings
    from promo_engine.app import create_app
    from wallet import WalletClient

    app = create_app(make_settings(database_url))
    with app.app_context():
        app.extensions["promo"].engine()  # compile before the barrier, not inside the race
    wallets = [WalletClient(app.test_client(), key_id, secret) for _ in range(threads)]

    def send(index_body):
        index, body = index_body
        response = wallets[index % threads].post("/v1/events", json.dumps(body))
        return response.status_code, response.get_data(as_text=True)

    barrier.wait(timeout=60)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results.put(list(pool.map(send, enumerate(bodies))))
    with app.app_context():
        from promo_engine.extensions import db
        db.engine.dispose()
