"""Worker processes for the concurrency tests: each builds its own app (own connection
pool) and fires its share of requests from several threads at once, after a barrier.

Below, the same over HTTP against a real server, for the production tests: wallet "hosts"
(processes) of many threads that race a burst of events or keep up a stream of payments,
retrying like a real wallet, and the check of what they were told against the ledger."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor


def run_worker(database_url, key_id, secret, bodies, threads, barrier, results):
    from promo_engine.app import create_app

    from conftest import make_settings
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
        from promo_engine.ledger.extensions import db
        db.engine.dispose()


# -- over HTTP, against a real server (test_production_concurrency.py, test_faults.py) ----

RETRY_WAIT_CAP = 1.0  # s: Retry-After is honoured up to this (the tests' settle periods are short)
CONNECTION_RETRY_WAIT = 0.1  # s
GIVE_UP_AFTER = 60.0  # s: an event still without an answer then is reported unanswered
REQUEST_TIMEOUT = (3.0, 20.0)  # s: connect, read


class HttpWallet:
    """The wallet backend over HTTP on one keep-alive connection: signs every request (again
    on every retry) and, like a real wallet, retries an event with the very same body on 503
    (after its Retry-After) and on connection errors and timeouts until it gets an answer.

    `send` returns the event's attempts, each a dict: started/ended (time.time()), status (None
    for a connection error), error, retry_after, replayed (Idempotent-Replayed), body."""

    def __init__(self, base: str, key_id: str, secret: str, *, give_up_after=GIVE_UP_AFTER):
        import requests
        self.base, self.key_id, self.secret = base, key_id, secret
        self.give_up_after = give_up_after
        self.session = requests.Session()

    def warm_up(self) -> None:
        """Opens the connection before a race, so that the race is on the requests."""
        import requests
        try:
            self.session.get(f"{self.base}/healthz", timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            pass

    def headers(self, method: str, target: str, raw: bytes) -> dict:
        """Signed as the contract says (computed here, not with the server's own code, which
        also keeps the hosts' start-up light)."""
        import hashlib
        import hmac
        timestamp = str(int(time.time()))
        message = b".".join([timestamp.encode(), method.encode(), target.encode(), raw])
        digest = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-Promo-Key": self.key_id, "X-Promo-Timestamp": timestamp,
                "X-Promo-Signature": f"v1={digest}", "Content-Type": "application/json"}

    def attempt(self, raw: bytes) -> dict:
        import requests
        headers = self.headers("POST", "/v1/events", raw)
        started = time.time()
        try:
            response = self.session.post(f"{self.base}/v1/events", data=raw, headers=headers,
                                         timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            # A connection the server dropped is not reused; the next attempt opens another.
            self.session.close()
            return {"started": started, "ended": time.time(), "status": None,
                    "error": f"{type(exc).__name__}: {exc}"[:300], "retry_after": None,
                    "replayed": False, "body": None}
        return {"started": started, "ended": time.time(), "status": response.status_code,
                "error": None, "retry_after": response.headers.get("Retry-After"),
                "replayed": response.headers.get("Idempotent-Replayed") == "true",
                "body": response.text}

    def send(self, body: dict, on_attempt=None) -> list[dict]:
        raw = json.dumps(body).encode()
        attempts = []
        deadline = time.monotonic() + self.give_up_after
        while True:
            result = self.attempt(raw)
            attempts.append(result)
            if on_attempt is not None:
                on_attempt(result)
            status = result["status"]
            if status is not None and status != 503:
                return attempts
            if time.monotonic() > deadline:
                return attempts  # unanswered: the test reports it
            if status == 503:
                retry_after = result["retry_after"]
                wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
                time.sleep(min(wait, RETRY_WAIT_CAP))
            else:
                time.sleep(CONNECTION_RETRY_WAIT)


def run_http_burst(base, key_id, secret, bodies, threads, barrier, results):
    """One "host" of a race: `threads` wallets, each on its own connection, send `bodies`
    (spread over them) all at once, released with the other hosts by `barrier`. Puts one
    (key id, event body, attempts) per body on `results`."""
    import threading
    wallets = [HttpWallet(base, key_id, secret) for _ in range(threads)]
    shares = [list(enumerate(bodies))[i::threads] for i in range(threads)]
    start = threading.Barrier(threads + 1)
    answers: list = [None] * len(bodies)

    def thread(wallet, share):
        wallet.warm_up()
        start.wait(timeout=60)
        for index, body in share:
            answers[index] = (key_id, body, wallet.send(body))

    workers = [threading.Thread(target=thread, args=(wallet, share), daemon=True)
               for wallet, share in zip(wallets, shares)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=60)
    start.wait(timeout=60)
    for worker in workers:
        worker.join()
    results.put(answers)


# The stream: payments at merchants of the fault tests' campaigns, and at one without any.
CAMPAIGN_MERCHANTS = ("m_early", "m_late", "m_limited")
PLAIN_MERCHANT = "m_plain"  # no campaign: base points only, no reservation needed


def stream_body(host: str, thread: int, n: int) -> dict:
    """The n-th payment of a stream thread. Thread 0 of a host pays only where no campaign
    applies (so base-points events keep flowing while a campaign event is being retried);
    the others go round the campaigns' merchants and that one. Users are spread so that
    some of them pay from several threads at once."""
    merchants = (PLAIN_MERCHANT,) if thread == 0 else CAMPAIGN_MERCHANTS + (PLAIN_MERCHANT,)
    return {"event_id": f"{host}-t{thread}-{n}", "type": "payment",
            "user_id": f"u{(thread * 7 + n) % 23}", "occurred_at": "2026-06-15T12:00:00+08:00",
            "merchant_id": merchants[n % len(merchants)],
            "amount": f"{10 + n % 5}.00", "currency": "CNY"}


# Shared progress of the stream hosts: indexes into their multiprocessing.Array.
ANSWERED, ANSWERED_CAMPAIGN, ANSWERED_PLAIN, UNAVAILABLE, CONNECTION_ERRORS = range(5)
PROGRESS_SLOTS = 5


def run_http_stream(base, key_id, secret, host, threads, stop, progress, results):
    """One "host" of a steady load: `threads` wallets, each sending new payments
    (`stream_body`) one after another, every one retried until answered, until `stop` is
    set. Counts into `progress` (see ANSWERED...) as it goes, 503s and connection errors
    at each attempt, answers once an event has one; finally puts one
    (key id, event body, attempts) per event on `results`."""
    import threading
    sent: list = []
    lock = threading.Lock()

    def count(index: int, by: int = 1) -> None:
        with progress.get_lock():
            progress[index] += by

    def counted(attempt: dict) -> None:
        if attempt["status"] == 503:
            count(UNAVAILABLE)
        elif attempt["status"] is None:
            count(CONNECTION_ERRORS)

    def thread(number: int) -> None:
        wallet = HttpWallet(base, key_id, secret)
        n = 0
        while not stop.is_set():
            body = stream_body(host, number, n)
            n += 1
            attempts = wallet.send(body, counted)
            with lock:
                sent.append((key_id, body, attempts))
            if attempts[-1]["status"] in (200, 201):
                count(ANSWERED)
                count(ANSWERED_PLAIN if body["merchant_id"] == PLAIN_MERCHANT
                      else ANSWERED_CAMPAIGN)

    workers = [threading.Thread(target=thread, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(sent)


# -- checking what the wallets were told against the ledger ----------------------------------

def answered(attempts: list[dict]) -> bool:
    status = attempts[-1]["status"]
    return status is not None and status != 503


def check_answers(ledger_events: dict, answers, *, refusals=("refund_exceeds_payment",)) -> dict:
    """Every event the wallets sent against the ledger's event rows (LedgerView.events()).

    `answers`: (key id, event body, attempts) per copy sent. Checks that every event was
    answered in the end; that all 2xx answers of one event (copies and retries) are one
    byte-identical body, at most one of them 201 and every 200 marked Idempotent-Replayed;
    that each event answered 2xx has exactly one event row, whose stored response is that
    body and whose reward rows are exactly the rewards (by reward id) the body lists; that an
    event refused (422 with a code in `refusals`) left no row; that there is no row nobody
    was answered for, and that every row's response lists exactly its reward rows (nothing
    half-written). Returns {(key id, event id): the answer's JSON} for the 2xx events."""
    groups: dict = {}
    for key_id, body, attempts in answers:
        groups.setdefault((key_id, body["event_id"]), []).append(attempts)
    problems = []
    accepted = {}
    for key, copies in groups.items():
        every = [a for attempts in copies for a in attempts]
        server_errors = [a for a in every if a["status"] is not None and a["status"] >= 500
                         and a["status"] != 503]
        if server_errors:
            problems.append(f"{key}: {server_errors[0]['status']} {server_errors[0]['body']}")
        if not all(answered(attempts) for attempts in copies):
            last = [attempts[-1] for attempts in copies if not answered(attempts)][0]
            problems.append(f"{key}: never answered; last attempt {last}")
            continue
        ok = [a for a in every if a["status"] in (200, 201)]
        finals = [attempts[-1] for attempts in copies]
        if not ok:
            codes = {json.loads(a["body"])["error"]["code"] for a in finals}
            if not all(a["status"] == 422 for a in finals) or not codes <= set(refusals):
                problems.append(f"{key}: answered {[(a['status'], a['body']) for a in finals]}")
            if key in ledger_events:
                problems.append(f"{key}: refused ({codes}) yet in the ledger")
            continue
        bodies = {a["body"] for a in ok}
        if len(bodies) != 1:
            problems.append(f"{key}: {len(bodies)} different 2xx bodies: {sorted(bodies)}")
        if sum(a["status"] == 201 for a in ok) > 1:
            problems.append(f"{key}: more than one 201")
        if any(a["status"] == 200 and not a["replayed"] for a in ok):
            problems.append(f"{key}: a 200 without Idempotent-Replayed: true")
        if any(a["status"] == 201 and a["replayed"] for a in ok):
            problems.append(f"{key}: a 201 marked replayed")
        if any(a["status"] not in (200, 201) for a in finals):
            problems.append(f"{key}: copies answered both 2xx and {[a['status'] for a in finals]}")
        body = ok[0]["body"]
        parsed = json.loads(body)
        accepted[key] = parsed
        row = ledger_events.get(key)
        if row is None:
            problems.append(f"{key}: answered {ok[0]['status']} but not in the ledger")
            continue
        if row["response"] != body:
            problems.append(f"{key}: stored response {row['response']!r} != answer {body!r}")
        listed = {r["reward_id"] for r in parsed["rewards"]}
        if listed != row["reward_ids"]:
            problems.append(f"{key}: answer lists rewards {sorted(listed)}, ledger has "
                            f"{sorted(row['reward_ids'])}")
    for key, row in ledger_events.items():
        if key not in accepted:
            problems.append(f"{key}: in the ledger, but no wallet was answered 2xx for it")
        stored = {r["reward_id"] for r in json.loads(row["response"])["rewards"]} \
            if row["response"] else None
        if stored != row["reward_ids"]:
            problems.append(f"{key}: half-written: response {row['response']!r}, reward rows "
                            f"{sorted(row['reward_ids'])}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
    return accepted


def reward_value(reward: dict) -> int:
    """A reward's value as the ledger counts budgets: points, or money in minor units (CNY)."""
    from decimal import Decimal
    if "points" in reward:
        return reward["points"]
    amount = reward["voucher"]["amount"] if "voucher" in reward else reward["amount"]
    return int(Decimal(amount) * 100)


def campaign_totals(accepted: dict) -> dict[str, int]:
    """What the answers say each campaign gave (reversals included)."""
    totals: dict[str, int] = {}
    for parsed in accepted.values():
        for reward in parsed["rewards"]:
            if reward["campaign_id"] is not None:
                totals[reward["campaign_id"]] = (totals.get(reward["campaign_id"], 0)
                                                 + reward_value(reward))
    return totals


# -- a pool of worker processes kept for a whole module (test_lifecycle_concurrency.py) ----

def serve_wallets(number, commands, barrier, results):
    """A worker process of `WalletPool`: for each command (settings for `make_settings`,
    API key id, secret, bodies, threads) it fires the bodies from that many threads, each
    with its own wallet client, released together with the other workers by `barrier`, and
    puts (number, "ok", [(status, body text)...]) on `results`; on an error (number,
    "error", traceback). The app is kept while the settings stay the same (its campaigns
    are checked again before every burst); `None` ends the worker."""
    import threading
    import traceback

    from promo_engine.app import create_app

    from conftest import make_settings
    from wallet import WalletClient

    current: list = []  # [(settings key, app)] while an app is kept

    def forget():
        if current:
            from promo_engine.ledger.extensions import db
            from promo_engine.service import promo_service
            app = current.pop()[1]
            promo_service(app).close()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()

    while True:
        command = commands.get()
        if command is None:
            forget()
            return
        settings, key_id, secret, bodies, threads = command
        try:
            key = repr(sorted(settings.items()))
            if not current or current[0][0] != key:
                forget()
                current.append((key, create_app(make_settings(**settings))))
            app = current[0][1]
            with app.app_context():  # compiled before the barrier, not inside the race
                service = app.extensions["promo"]
                service.invalidate()
                service.engine()
                # The app is kept across tests, each with a client of its own: read the
                # clients again now rather than within the directory's reload interval.
                from promo_engine.ledger.api_clients import client_directory
                client_directory().invalidate()
            threads = max(1, min(threads, len(bodies)))
            wallets = [WalletClient(app.test_client(), key_id, secret) for _ in range(threads)]
            shares = [list(enumerate(bodies))[i::threads] for i in range(threads)]
            answers: list = [None] * len(bodies)
            start = threading.Barrier(threads + 1)

            def fire(wallet, share):
                start.wait(timeout=60)
                for index, body in share:
                    try:
                        response = wallet.post("/v1/events", json.dumps(body))
                        answers[index] = (response.status_code, response.get_data(as_text=True))
                    except Exception:
                        answers[index] = (None, traceback.format_exc())

            workers = [threading.Thread(target=fire, args=(wallet, share), daemon=True)
                       for wallet, share in zip(wallets, shares)]
            for worker in workers:
                worker.start()
            barrier.wait(timeout=60)
            start.wait(timeout=60)
            for worker in workers:
                worker.join()
            results.put((number, "ok", answers))
        except Exception:
            results.put((number, "error", traceback.format_exc()))


class WalletPool:
    """`processes` worker processes (`serve_wallets`), started once and used for many
    bursts: a process costs seconds to start on a busy machine, a burst a fraction of one."""

    def __init__(self, processes: int, threads: int):
        self.processes, self.threads = processes, threads
        self.workers: list = []

    def start(self) -> "WalletPool":
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(self.processes)
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(self.processes)]
        self.workers = [context.Process(target=serve_wallets,
                                        args=(n, self.commands[n], self.barrier, self.results),
                                        daemon=True)
                        for n in range(self.processes)]
        for worker in self.workers:
            worker.start()
        return self

    def fire(self, settings: dict, key_id: str, secret: str,
             bodies: list[dict]) -> list[tuple[int | None, str]]:
        """The bodies spread over the workers, all sent at once; (status, body text) of each,
        in the order of `bodies`."""
        if not self.workers:
            self.start()
        for n, queue in enumerate(self.commands):
            queue.put((settings, key_id, secret, bodies[n::self.processes], self.threads))
        collected, errors = {}, []
        try:
            for _ in self.workers:
                number, outcome, value = self.results.get(timeout=180)
                if outcome == "ok":
                    collected[number] = value
                else:
                    errors.append(value)
        except Exception as exc:
            errors.append(f"no answer from a worker: {exc!r}")
        if errors:
            self.close()  # a broken barrier or a dead worker: the next burst starts anew
            raise AssertionError("a wallet worker failed:\n" + "\n".join(errors))
        answers: list = [None] * len(bodies)
        for number, share in collected.items():
            for index, answer in enumerate(share):
                answers[number + index * self.processes] = answer
        return answers

    def close(self) -> None:
        for queue in getattr(self, "commands", []):
            queue.put(None)
        for worker in self.workers:
            worker.join(timeout=20)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
        self.workers = []
