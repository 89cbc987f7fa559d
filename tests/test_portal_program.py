"""The bank's Program page (/portal/admin/program) and its CSV: the hand-checked figures of
`program_history.py`, charts as inline SVG with whole-number ticks, admins only, English and
Chinese (SQLite; the figures themselves run on PostgreSQL too in test_program_report.py)."""
from __future__ import annotations

import re

import pytest

from program_history import post_history
from test_portal_support import accounts, admin, merchant_a  # noqa: F401

PAGE = "/portal/admin/program?from=2026-06-01&to=2026-06-21"
CSV = "/portal/admin/program.csv?from=2026-06-01&to=2026-06-21"


@pytest.fixture
def database_url(sqlite_url):
    return sqlite_url


@pytest.fixture
def history(app, tmp_path):
    post_history(app, tmp_path)


def cells(page, table: str, key: str) -> list[str]:
    row = re.search(rf'<table class="table" id="{table}">.*?<tr data-[a-z-]+="{key}">(.*?)</tr>',
                    page.text, re.S).group(1)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.replace("<br>", " "), re.S)]


def test_figures_in_english(app, admin, history):
    page = admin.get(PAGE)
    assert page.status_code == 200
    assert re.search(r'id="metric-activations">7<', page.text)
    assert cells(page, "program-cohorts", "2026-06-01") == [
        "2026-06-01 → 2026-06-07", "3", "33.3% (1)", "66.7% (2)"]
    assert cells(page, "program-cohorts", "2026-06-15") == [
        "2026-06-15 → 2026-06-21", "2", "50% (1)", "50% (1)"]
    assert cells(page, "program-campaigns", "welcome") == [
        "Welcome cashback welcome", "CN¥70.00", "7", "CN¥10.00 (7 activated)",
        "CN¥17.50 (4 first-paying)"]
    assert cells(page, "program-campaigns", "dining")[3:] == [
        "CN¥10.00 (3 activated)", "CN¥15.00 (2 first-paying)"]
    assert 'href="/portal/admin/program"' in page.text  # in the admin's navigation


def test_charts_are_inline_svg_with_whole_number_ticks(app, admin, history):
    page = admin.get(PAGE)
    for chart in ("activations-wide", "activations-narrow", "cohorts-chart", "payers-chart"):
        assert f'<svg id="{chart}"' in page.text
    assert "<script" not in page.text
    payers = re.search(r'<svg id="payers-chart".*?</svg>', page.text, re.S).group(0)
    # 1, 1 and 5 payers: ticks 0 to 5 by 1, no 0.5.
    ticks = re.findall(r'text-anchor="end" font-size="14" fill="#64748b">([^<]+)<', payers)
    assert ticks == ["0", "1", "2", "3", "4", "5"]
    assert 'font-size="14"' in payers and not re.search(r'font-size="(?:[0-9]|1[0-3])"', page.text)
    assert "Jun 1" in payers and "Jun 15" in payers


def test_csv_export(app, admin, history):
    response = admin.get(CSV)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="program-2026-06-01-to-2026-06-21.csv"')
    body = response.data.decode("utf-8")
    assert body.startswith("\ufeffactivations_per_day\r\nday,activations\r\n2026-06-01,1\r\n")
    assert "welcome,Welcome cashback,70.00,0,7,7,4,10.00,17.50\r\n" in body
    assert 'href="/portal/admin/program.csv?from=2026-06-01&amp;to=2026-06-21"' in \
        admin.get(PAGE).text


def test_chinese(app, admin, history):
    admin.get("/portal/lang/zh")
    page = admin.get(PAGE)
    assert '<html lang="zh-Hans">' in page.text
    for text in ("计划概览", "每日激活", "每周活跃付款用户", "7 天内付款", "活动的新用户成本",
                 "下载 CSV"):
        assert text in page.text, text
    assert "6月1日" in page.text  # the charts' day labels
    assert cells(page, "program-campaigns", "welcome")[3] == "¥10.00 (7 位已激活)"


def test_not_yet_known_cohorts(app, admin):
    from datetime import date
    today = date.today().isoformat()
    page = admin.get(f"/portal/admin/program?from={today}&to={today}")
    assert page.status_code == 200
    assert page.text.count("not yet known") == 2
    assert "No campaign gave rewards for events in this range." in page.text


def test_a_bad_range_shows_the_default_with_a_message(app, admin):
    page = admin.get("/portal/admin/program?from=2026-06-10&to=2026-06-01")
    assert page.status_code == 200 and "That range cannot be shown" in page.text
    assert page.text.count('<tr data-week=') == 12
    assert admin.get("/portal/admin/program?from=yesterday").status_code == 200


@pytest.mark.parametrize("path", [PAGE, CSV])
def test_admins_only(app, client, merchant_a, path):
    assert merchant_a.get(path).status_code == 404  # as every admin page for a merchant
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and "/portal/login" in anonymous.headers["Location"]
    assert 'href="/portal/admin/program"' not in merchant_a.get("/portal/offers").text
