"""Applying campaigns to the database (SQLite and PostgreSQL): created, updated, unchanged,
retired, all or nothing; reading the open ones back; opening and closing them on time."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from promo_engine.campaigns import store as campaign_store
from promo_engine.campaigns.files import LoadedCampaign
from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.spec import canonical_spec, spec_hash
from promo_engine.campaigns.store import (ApplyError, ApplyReport, apply_campaigns,
                                          campaigns_revision, load_open_campaigns)
from promo_engine.core.registry import Registry, build_registry, get_plugin_manager
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, CampaignUsage, ProgramState

from conftest import reused_schema_url

UTC = timezone.utc
BEFORE = datetime(2027, 1, 1, tzinfo=UTC)
# spring-dining runs 2027-02-05 00:00 to 2027-02-13 00:00 in Shanghai (UTC+8).
STARTS = datetime(2027, 2, 4, 16, tzinfo=UTC)
ENDS = datetime(2027, 2, 12, 16, tzinfo=UTC)
DURING = datetime(2027, 2, 6, tzinfo=UTC)
AFTER = datetime(2027, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test on SQLite and on PostgreSQL, each on an empty schema."""
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def make(registry):
    def make(campaign_id="spring-dining", **fields) -> LoadedCampaign:
        document = {"id": campaign_id, "type": "holiday_discount",
                    "starts_at": "2027-02-05T00:00:00", "ends_at": "2027-02-13T00:00:00",
                    "params": {"percent": 15}, **fields}
        campaign = load_campaign(document, registry=registry, currency="CNY",
                                 default_timezone="Asia/Shanghai")
        return LoadedCampaign(campaign, canonical_spec(document, "Asia/Shanghai"),
                              f"{campaign_id}.yaml", 1)
    return make


def record(campaign_id) -> CampaignRecord:
    db.session.expire_all()
    return db.session.get(CampaignRecord, campaign_id)


def statuses() -> dict[str, str]:
    db.session.expire_all()
    return dict(db.session.execute(select(CampaignRecord.id, CampaignRecord.status)).all())


def set_status(campaign_id, status):
    db.session.get(CampaignRecord, campaign_id).status = status
    db.session.commit()


# --- apply ----------------------------------------------------------------------------------

def test_new_campaign_is_created_with_its_usage_row(ctx, make):
    item = make(name="Spring dining")
    report = apply_campaigns([item], now=BEFORE)
    assert report == ApplyReport(created=["spring-dining"])
    stored = record("spring-dining")
    assert (stored.type, stored.name, stored.source, stored.status) == (
        "holiday_discount", "Spring dining", "yaml", "scheduled")
    assert (stored.starts_at, stored.ends_at) == (STARTS, ENDS)
    assert stored.spec == item.spec
    assert stored.spec_hash == spec_hash(item.spec)
    assert (stored.created_at, stored.updated_at) == (BEFORE, BEFORE)
    usage = db.session.get(CampaignUsage, "spring-dining")
    assert (usage.spent, usage.redemptions) == (0, 0)
    assert campaigns_revision() == 1


def test_status_on_create_follows_the_schedule(ctx, make):
    # DURING is 2027-02-06 08:00 in Shanghai; starts_at is inclusive, ends_at exclusive.
    apply_campaigns([
        make("inside"),
        make("starts-now", starts_at="2027-02-06T08:00:00"),
        make("ends-now", starts_at="2027-02-01T00:00:00", ends_at="2027-02-06T08:00:00"),
        make("later", starts_at="2027-06-01T00:00:00", ends_at="2027-07-01T00:00:00"),
    ], now=DURING)
    assert statuses() == {"inside": "open", "starts-now": "open", "ends-now": "closed",
                          "later": "scheduled"}


def test_applying_the_same_campaigns_again_changes_nothing(ctx, make):
    apply_campaigns([make(), make("weekend-3x")], now=BEFORE)
    report = apply_campaigns([make(), make("weekend-3x")], now=DURING)
    assert report == ApplyReport(unchanged=["spring-dining", "weekend-3x"])
    assert not report.changed
    assert campaigns_revision() == 1
    assert record("spring-dining").updated_at == BEFORE
    assert statuses() == {"spring-dining": "scheduled", "weekend-3x": "scheduled"}


def test_changed_campaign_is_updated_and_bumps_the_revision(ctx, make):
    apply_campaigns([make(), make("weekend-3x")], now=BEFORE)
    report = apply_campaigns([make(name="Spring dining 20%", params={"percent": 20}),
                              make("weekend-3x")], now=DURING)
    assert report == ApplyReport(updated=["spring-dining"], unchanged=["weekend-3x"])
    stored = record("spring-dining")
    assert (stored.name, stored.spec["params"], stored.updated_at) == (
        "Spring dining 20%", {"percent": 20}, DURING)
    assert stored.created_at == BEFORE
    assert stored.status == "scheduled"  # same schedule: the status is the scheduler's
    assert record("weekend-3x").updated_at == BEFORE
    assert campaigns_revision() == 2


def test_schedule_change_recomputes_the_status(ctx, make):
    apply_campaigns([make()], now=BEFORE)
    apply_campaigns([make(starts_at="2026-12-01T00:00:00")], now=BEFORE)
    stored = record("spring-dining")
    assert (stored.status, stored.starts_at) == ("open", datetime(2026, 11, 30, 16, tzinfo=UTC))


def test_paused_campaign_stays_paused_when_rescheduled(ctx, make):
    apply_campaigns([make()], now=DURING)
    set_status("spring-dining", "paused")
    report = apply_campaigns([make(ends_at="2027-02-20T00:00:00")], now=DURING)
    assert report.updated == ["spring-dining"]
    assert statuses() == {"spring-dining": "paused"}


def test_retired_campaign_applied_again_comes_back(ctx, make):
    apply_campaigns([make(), make("weekend-3x")], now=DURING)
    apply_campaigns([make("weekend-3x")], prune=True, now=DURING)
    assert statuses()["spring-dining"] == "retired"
    report = apply_campaigns([make(), make("weekend-3x")], now=DURING)
    assert report == ApplyReport(updated=["spring-dining"], unchanged=["weekend-3x"])
    assert statuses() == {"spring-dining": "open", "weekend-3x": "open"}
    assert campaigns_revision() == 3


def test_prune_retires_yaml_campaigns_not_in_the_files(ctx, make):
    apply_campaigns([make(), make("weekend-3x"), make("new-wallet-bonus")], now=BEFORE)
    db.session.add(CampaignRecord(id="portal-deal", type="holiday_discount", name="p",
                                  source="portal", spec={}, spec_hash="x", status="open",
                                  starts_at=STARTS, ends_at=ENDS))
    db.session.commit()
    report = apply_campaigns([make("weekend-3x")], prune=True, now=DURING)
    assert report == ApplyReport(unchanged=["weekend-3x"],
                                 retired=["new-wallet-bonus", "spring-dining"])
    assert statuses() == {"spring-dining": "retired", "weekend-3x": "scheduled",
                          "new-wallet-bonus": "retired", "portal-deal": "open"}
    assert record("spring-dining").updated_at == DURING
    # Already retired: not retired again.
    assert apply_campaigns([make("weekend-3x")], prune=True, now=AFTER) == \
        ApplyReport(unchanged=["weekend-3x"])
    assert campaigns_revision() == 2


def test_without_prune_campaigns_not_given_are_left_alone(ctx, make):
    apply_campaigns([make(), make("weekend-3x")], now=BEFORE)
    assert apply_campaigns([make("weekend-3x")], now=BEFORE) == \
        ApplyReport(unchanged=["weekend-3x"])
    assert statuses() == {"spring-dining": "scheduled", "weekend-3x": "scheduled"}


def test_dry_run_reports_and_writes_nothing(ctx, make):
    apply_campaigns([make()], now=BEFORE)
    report = apply_campaigns([make(name="renamed"), make("weekend-3x")], prune=True,
                             dry_run=True, now=DURING)
    assert report == ApplyReport(created=["weekend-3x"], updated=["spring-dining"])
    assert statuses() == {"spring-dining": "scheduled"}
    assert record("spring-dining").name == "spring-dining"
    assert db.session.get(CampaignUsage, "weekend-3x") is None
    assert campaigns_revision() == 1


def test_dry_run_on_an_empty_database_changes_not_even_the_revision(ctx, make):
    def program_state():
        return db.session.execute(select(ProgramState.id, ProgramState.campaigns_revision,
                                         ProgramState.program_id)).all()
    [(row_id, revision, program_id)] = program_state()  # made by the migrations
    assert (row_id, revision) == (1, 0)
    assert apply_campaigns([make()], dry_run=True, now=BEFORE).created == ["spring-dining"]
    assert program_state() == [(1, 0, program_id)]


def test_portal_campaign_with_the_same_id_is_refused_and_nothing_written(ctx, make):
    db.session.add(CampaignRecord(id="weekend-3x", type="points_multiplier", name="p",
                                  source="portal", spec={}, spec_hash="x", status="open",
                                  starts_at=STARTS, ends_at=ENDS))
    db.session.commit()
    with pytest.raises(ApplyError, match="campaign weekend-3x is managed in the portal"):
        apply_campaigns([make(), make("weekend-3x")], now=BEFORE)
    assert statuses() == {"weekend-3x": "open"}
    assert campaigns_revision() == 0


def test_failure_midway_writes_nothing(ctx, make, monkeypatch):
    apply_campaigns([make()], now=BEFORE)

    def broken(session):
        raise RuntimeError("disk full")
    monkeypatch.setattr(campaign_store, "bump_revision", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        apply_campaigns([make(name="renamed"), make("weekend-3x")], prune=True, now=DURING)
    assert statuses() == {"spring-dining": "scheduled"}
    assert record("spring-dining").name == "spring-dining"
    assert db.session.get(CampaignUsage, "weekend-3x") is None


def test_the_same_id_twice_is_refused(ctx, make):
    with pytest.raises(ApplyError, match="the same campaign id is given twice"):
        apply_campaigns([make(), make()])


# --- reading back ---------------------------------------------------------------------------

def test_campaigns_revision_is_zero_on_an_empty_database(ctx):
    assert campaigns_revision() == 0


def test_load_open_campaigns_rebuilds_the_open_ones(ctx, make, registry):
    later = make("summer-dining", starts_at="2027-06-01T00:00:00",
                 ends_at="2027-07-01T00:00:00")
    wallet = make("new-wallet-bonus", type="first_activation_bonus", params={"points": 500},
                  starts_at="2027-01-01T00:00:00", timezone="UTC")
    apply_campaigns([make(), later, wallet], now=DURING)
    campaigns = load_open_campaigns(registry=registry, currency="CNY",
                                    default_timezone="Europe/London")
    assert campaigns == [wallet.campaign, make().campaign]


def test_open_campaign_whose_spec_no_longer_loads_is_skipped(ctx, make, registry, caplog):
    apply_campaigns([make(), make("weekend-3x", type="points_multiplier",
                                  params={"multiplier": 3})], now=DURING)
    without_discounts = Registry(
        campaign_types={name: t for name, t in registry.campaign_types.items()
                        if name != "holiday_discount"},
        event_types=registry.event_types)
    with caplog.at_level(logging.ERROR, logger="promo_engine.campaigns.store"):
        campaigns = load_open_campaigns(registry=without_discounts, currency="CNY",
                                        default_timezone="Asia/Shanghai")
    assert [c.id for c in campaigns] == ["weekend-3x"]
    assert "campaign spring-dining is open but its stored spec does not load" in caplog.text


# --- lifecycle ------------------------------------------------------------------------------

def test_type_or_budget_unit_of_a_used_campaign_cannot_change(app, tmp_path):
    from promo_engine.campaigns.store import ApplyError
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage

    from wallet import OPEN_RANGE, install_campaigns
    install_campaigns(app, f"id: c1\ntype: holiday_discount\n{OPEN_RANGE}"
                           "budget: {amount: \"100.00\"}\nparams: {percent: 10}\n", tmp_path)
    with app.app_context():
        db.session.get(CampaignUsage, "c1").spent = 500
        db.session.commit()
    with pytest.raises(ApplyError, match="c1 has already granted rewards"):
        install_campaigns(app, f"id: c1\ntype: points_multiplier\n{OPEN_RANGE}"
                               "budget: {points: 100}\nparams: {multiplier: 2}\n", tmp_path)
    # Other changes stay allowed.
    report = install_campaigns(app, f"id: c1\ntype: holiday_discount\n{OPEN_RANGE}"
                                    "budget: {amount: \"200.00\"}\nparams: {percent: 12}\n", tmp_path)
    assert report.updated == ["c1"]
