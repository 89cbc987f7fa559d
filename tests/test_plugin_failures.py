"""A broken plugin costs only its own campaigns: the event, and every other campaign, go on.

An evaluator that raises skips its campaign for that event; a compile() that raises skips
its campaign from the load; a stored campaign whose type is no longer installed is skipped.
Each is logged and none is a 500. Plugin failures are counted on /metrics by campaign type.
"""
from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from promo_engine import hookimpl
from promo_engine.core.registry import build_registry, get_plugin_manager

from conftest import running_app
from factories import PaymentPointsType
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, without_ids


class RaisesInEvaluator(PaymentPointsType):
    name = "raises_in_evaluator"

    def compile(self, campaign):
        def evaluate(ctx):
            raise RuntimeError("evaluator bug")
        return evaluate


class RaisesInCompile(PaymentPointsType):
    name = "raises_in_compile"

    def compile(self, campaign):
        raise RuntimeError("compile bug")


class BrokenTypesPlugin:
    @hookimpl
    def promo_campaign_types(self):
        return [RaisesInEvaluator(), RaisesInCompile()]


def registry_with_broken_types():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(BrokenTypesPlugin(), name="broken-types")
    return build_registry(pm)


def builtin_registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


@pytest.fixture
def app(settings):
    with running_app(settings, registry_with_broken_types()) as app:
        yield app


def campaigns_with(broken_type: str) -> str:
    """Two working campaigns around a broken one that outranks them both."""
    return f"""
id: broken
type: {broken_type}
{OPEN_RANGE}priority: 200
params: {{}}
---
id: dining-10
type: holiday_discount
{OPEN_RANGE}priority: 100
params: {{percent: 10}}
---
id: double-points
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
"""


WORKING_REWARDS = [
    {"campaign_id": None, "kind": "points", "points": 200},
    {"campaign_id": "dining-10", "kind": "discount", "amount": "20.00", "currency": "CNY"},
    {"campaign_id": "double-points", "kind": "points", "points": 200},
]


def campaign_errors(client) -> dict[str, float]:
    """promo_campaign_errors_total by campaign_type, as GET /metrics shows it."""
    response = client.get("/metrics")
    assert response.status_code == 200
    counts = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == "promo_campaign_errors_total":
                counts[sample.labels["campaign_type"]] = sample.value
    return counts


def error_records(caplog, campaign_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.levelno >= logging.ERROR and campaign_id in r.getMessage()]


# --- an evaluator that raises ---------------------------------------------------------------

def test_evaluator_that_raises_skips_only_its_campaign(app, tmp_path, caplog):
    install_campaigns(app, campaigns_with("raises_in_evaluator"), tmp_path)
    wallet = new_wallet_client(app)
    caplog.set_level(logging.ERROR)
    response = wallet.event(**payment("evt_1", "200.00"))
    assert response.status_code == 201
    assert without_ids(response.get_json()["rewards"]) == WORKING_REWARDS
    assert response.get_json()["points_balance"] == 400


def test_evaluator_that_raises_is_logged_with_its_traceback(app, tmp_path, caplog):
    install_campaigns(app, campaigns_with("raises_in_evaluator"), tmp_path)
    wallet = new_wallet_client(app)
    caplog.set_level(logging.ERROR)
    wallet.event(**payment("evt_1", "200.00"))
    (record,) = error_records(caplog, "broken")
    assert "raises_in_evaluator" in record.getMessage()
    assert isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "evaluator bug"


def test_evaluator_that_raises_is_counted_per_event(app, tmp_path):
    install_campaigns(app, campaigns_with("raises_in_evaluator"), tmp_path)
    wallet = new_wallet_client(app)
    wallet.event(**payment("evt_1", "200.00"))
    assert campaign_errors(app.test_client()) == {"raises_in_evaluator": 1.0}
    wallet.event(**payment("evt_2", "200.00"))
    assert campaign_errors(app.test_client()) == {"raises_in_evaluator": 2.0}


def test_quote_with_an_evaluator_that_raises_shows_the_other_rewards(app, tmp_path):
    install_campaigns(app, campaigns_with("raises_in_evaluator"), tmp_path)
    response = new_wallet_client(app).post("/v1/quote", payment("q_1", "200.00"))
    assert response.status_code == 200
    assert without_ids(response.get_json()["rewards"]) == WORKING_REWARDS


def test_idempotent_replay_after_an_evaluator_that_raises_is_the_first_response(app, tmp_path):
    install_campaigns(app, campaigns_with("raises_in_evaluator"), tmp_path)
    wallet = new_wallet_client(app)
    first = wallet.event(**payment("evt_1", "200.00"))
    again = wallet.event(**payment("evt_1", "200.00"))
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.get_data() == first.get_data()


# --- a compile() that raises ----------------------------------------------------------------

def test_compile_that_raises_skips_its_campaign_at_load(app, tmp_path, caplog):
    install_campaigns(app, campaigns_with("raises_in_compile"), tmp_path)
    wallet = new_wallet_client(app)
    caplog.set_level(logging.ERROR)
    response = wallet.event(**payment("evt_1", "200.00"))
    assert response.status_code == 201
    assert without_ids(response.get_json()["rewards"]) == WORKING_REWARDS
    (record,) = error_records(caplog, "broken")
    assert "raises_in_compile" in record.getMessage()
    assert str(record.exc_info[1]) == "compile bug"


def test_compile_that_raises_is_counted_once_per_load_not_per_event(app, tmp_path):
    install_campaigns(app, campaigns_with("raises_in_compile"), tmp_path)
    wallet = new_wallet_client(app)
    wallet.event(**payment("evt_1", "200.00"))
    wallet.event(**payment("evt_2", "200.00"))
    assert campaign_errors(app.test_client()) == {"raises_in_compile": 1.0}


def test_the_other_campaigns_of_a_load_with_a_compile_error_are_all_open(app, tmp_path):
    install_campaigns(app, campaigns_with("raises_in_compile"), tmp_path)
    with app.app_context():
        engine = app.extensions["promo"].engine()
    assert sorted(engine.campaigns) == ["dining-10", "double-points"]


# --- a stored campaign whose type is no longer installed ------------------------------------

def test_campaign_of_an_uninstalled_type_is_skipped(settings, tmp_path, caplog):
    # Applied while the plugin was installed...
    with running_app(settings, registry_with_broken_types()) as before:
        install_campaigns(before, campaigns_with("raises_in_evaluator"), tmp_path)
    # ...and served after it was removed.
    with running_app(settings, builtin_registry()) as after:
        wallet = new_wallet_client(after)
        caplog.set_level(logging.ERROR)
        response = wallet.event(**payment("evt_1", "200.00"))
        quoted = wallet.post("/v1/quote", payment("q_1", "200.00"))
        points = wallet.get("/v1/users/u_1/points")
        errors = campaign_errors(after.test_client())
    assert response.status_code == 201
    assert without_ids(response.get_json()["rewards"]) == WORKING_REWARDS
    assert errors == {"raises_in_evaluator": 1.0}  # counted once, when the campaigns load
    assert quoted.status_code == 200
    assert without_ids(quoted.get_json()["rewards"]) == WORKING_REWARDS
    assert points.get_json()["points_balance"] == 400
    assert error_records(caplog, "broken"), "the skipped campaign is not logged"
