"""The back-test's HTML report (`campaigns simulate --html`): one file that needs no network,
whose table shows the exact figures with the currency's digits, whose charts mark the moment a
budget ran out, and which a person can read on a laptop and on a phone: in headless Chromium
at 1280 and 390 px no text is drawn under 11 px, no labels collide and nothing sticks out
sideways. The screenshots are saved under tests/screenshots/ to be looked at."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from .conftest import SCREENSHOTS, VIEWPORTS

from promo_engine.backtest.report_html import format_money, render_report, write_report
from promo_engine.backtest.results import CampaignDay, CampaignResult, SimulationResult

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 11, 1)
RAN_OUT = datetime(2026, 11, 18, 14, 5, 9, tzinfo=SHANGHAI)


def day(n: int) -> date:
    return FIRST + timedelta(days=n - 1)


def sample_result(*, name_of_first: str = "New wallet bonus") -> SimulationResult:
    """Thirty days of November 2026 and three campaigns: a money budget that runs out on the
    18th at 14:05:09, a points budget (weekends only), and one without a budget whose last day
    has a reversal and no reward (net -1)."""
    bonus = CampaignResult(
        campaign_id="new-wallet-bonus", name=name_of_first, type="first_activation_bonus",
        timezone="Asia/Shanghai", rewards=86, users=86, cost=Decimal("860.00"), points=0,
        budget_unit=None, budget=None, max_redemptions=None, budget_exhausted_at=None,
        days=[CampaignDay(day(n), 3, Decimal("30.00"), 0) for n in range(1, 30)]
        + [CampaignDay(day(30), -1, Decimal("-10.00"), 0)])
    dining = CampaignResult(
        campaign_id="spring-dining", name="Spring dining 15% off", type="holiday_discount",
        timezone="Asia/Shanghai", rewards=212, users=187, cost=Decimal("4995.88"), points=0,
        budget_unit="money", budget=Decimal("5000.00"), max_redemptions=None,
        budget_exhausted_at=RAN_OUT,
        days=[CampaignDay(day(n), 12, Decimal("276.50"), 0) for n in range(1, 18)]
        + [CampaignDay(day(18), 8, Decimal("295.38"), 0)])
    weekends = [n for n in range(1, 31) if day(n).weekday() >= 5]
    triple = CampaignResult(
        campaign_id="weekend-3x", name="Weekend 3x points", type="points_multiplier",
        timezone="Asia/Shanghai", rewards=2160, users=412, cost=Decimal("0"), points=194400,
        budget_unit="points", budget=200000, max_redemptions=None, budget_exhausted_at=None,
        days=[CampaignDay(day(n), 240, Decimal("0"), 21600) for n in weekends])
    campaigns = [bonus, dining, triple]
    for campaign in campaigns:  # the figures above are the days' sums
        assert sum(d.rewards for d in campaign.days) == campaign.rewards
        assert sum(d.cost for d in campaign.days) == campaign.cost
        assert sum(d.points for d in campaign.days) == campaign.points
    return SimulationResult(
        currency="CNY", events=61874, skipped=3, base_points=48250, campaigns=campaigns,
        totals_rewards=2458, totals_cost=Decimal("5855.88"), totals_points=194400,
        first_day=FIRST, last_day=day(30))


def year_result() -> SimulationResult:
    """A year of 12 campaigns with long names and large sums in yen (no minor digits): one
    stopped by max_redemptions without a budget, one giving points with no budget."""
    start, campaigns = date(2026, 3, 1), []
    for k in range(12):
        days = [CampaignDay(start + timedelta(days=n), (n * (k + 3)) % 97 + k,
                            Decimal((n * 7919 * (k + 1)) % 100000), 0) for n in range(365)]
        if k == 5:  # points only
            days = [CampaignDay(d.day, d.rewards, Decimal(0), d.rewards * 150) for d in days]
        cost, points = sum(d.cost for d in days), sum(d.points for d in days)
        budget_unit, budget, ran_out, max_redemptions = {
            0: ("money", Decimal(cost) + 1, None, None),
            1: ("money", Decimal(cost) + 900, datetime(2026, 12, 30, 23, 59, tzinfo=SHANGHAI),
                None),
            2: (None, None, datetime(2026, 3, 1, 0, 0, 1, tzinfo=SHANGHAI), 50_000),  # at once
            3: ("money", Decimal(cost) * 2, None, 900_000),
            5: (None, None, None, None),
            7: ("points", 10_000_000, None, None),
        }.get(k, (None, None, None, None))
        campaigns.append(CampaignResult(
            campaign_id=f"campaign-{k:02d}-" + "x" * (k * 3),
            name=f"Campaign {k} " + "with a rather long name for a phone " * (k % 3),
            type="holiday_discount", timezone="Asia/Shanghai",
            rewards=sum(d.rewards for d in days), users=1000 + k, cost=cost, points=points,
            budget_unit=budget_unit, budget=budget, max_redemptions=max_redemptions,
            budget_exhausted_at=ran_out, days=days))
    return SimulationResult(
        currency="JPY", events=12_345_678, skipped=0, base_points=987_654_321,
        campaigns=campaigns, totals_rewards=sum(c.rewards for c in campaigns),
        totals_cost=sum(c.cost for c in campaigns), totals_points=sum(c.points for c in campaigns),
        first_day=start, last_day=start + timedelta(days=364))


class Cells(HTMLParser):
    """The totals table as {row key: {column: text}} (rows by data-campaign-id, "total")."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.row: str | None = None
        self.column: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and ("data-campaign-id" in attrs or "data-total" in attrs):
            self.row = attrs.get("data-campaign-id", "total")
            self.rows[self.row] = {}
        elif tag == "td" and self.row is not None:
            self.column = attrs["data-col"]
            self.rows[self.row][self.column] = ""
        elif tag == "span" and attrs.get("class") == "id":
            self.rows[self.row][self.column] += " | "

    def handle_endtag(self, tag):
        if tag == "td":
            self.column = None
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.row is not None and self.column is not None:
            self.rows[self.row][self.column] += data


def table(html: str) -> dict[str, dict[str, str]]:
    parser = Cells()
    parser.feed(html[html.index('<table class="totals"'):html.index("</table>")])
    return parser.rows


def test_the_totals_table_shows_the_exact_figures():
    rows = table(render_report(sample_result()))
    assert rows == {
        "new-wallet-bonus": {"campaign": "New wallet bonus | new-wallet-bonus", "rewards": "86",
                             "users": "86", "cost": "860.00", "points": "0",
                             "budget": "No budget", "ran_out": "—"},
        "spring-dining": {"campaign": "Spring dining 15% off | spring-dining", "rewards": "212",
                          "users": "187", "cost": "4,995.88", "points": "0",
                          "budget": "5,000.00 CNY", "ran_out": "2026-11-18 14:05 +08:00"},
        "weekend-3x": {"campaign": "Weekend 3x points | weekend-3x", "rewards": "2,160",
                       "users": "412", "cost": "0.00", "points": "194,400",
                       "budget": "200,000 points", "ran_out": "—"},
        "total": {"campaign": "Total", "rewards": "2,458", "users": "", "cost": "5,855.88",
                  "points": "194,400", "budget": "", "ran_out": ""},
    }


def test_money_has_the_currency_digits_and_is_never_a_float():
    assert format_money(Decimal("1234567.5"), "CNY") == "1,234,567.50"
    assert format_money(Decimal("0.005"), "CNY") == "0.01"  # half up, as the ledger rounds
    assert format_money(Decimal("12345.5"), "JPY") == "12,346"
    assert format_money(Decimal("-7.25"), "KWD") == "-7.250"
    result = sample_result()
    result.currency, result.totals_cost = "JPY", Decimal("5856")
    assert table(render_report(result))["total"]["cost"] == "5,856"


def test_the_report_fetches_nothing():
    html = render_report(sample_result(name_of_first='Bonus <script>alert(1)</script> '
                                                     'https://evil.example/x.js'))
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r"""\b(?:src|href|xlink:href|action|srcset)\s*=""", html)
    assert "url(" not in html and "@import" not in html
    # The one address is the campaign's name, shown as text (headings, legends, tooltips).
    assert set(re.findall(r"https?://[\w./-]*", html)) == {"https://evil.example/x.js"}
    assert "Bonus &lt;script&gt;alert(1)&lt;/script&gt;" in html


def chart_of(html: str, campaign_id: str) -> ET.Element:
    card = re.search(rf'<article class="card campaign"[^>]*data-campaign-id="{campaign_id}".*?'
                     r'</article>', html).group(0)
    return ET.fromstring(re.search(r"<svg viewBox.*?</svg>", card).group(0))


def test_the_day_the_budget_ran_out_is_marked_where_it_happened():
    html = render_report(sample_result())
    assert 'Ran out on 2026-11-18 14:05 +08:00 (Asia/Shanghai)' in html
    svg = chart_of(html, "spring-dining")
    marks = [e for e in svg.iter() if e.get("class") == "ran-out"]
    assert [m.tag for m in marks] == ["line", "text"]
    assert marks[1].text == "ran out Nov 18"
    # The x axis spans 30 days; the mark stands 17 days, 14 h 05 min 09 s in.
    axis = next(e for e in svg.iter("line")
                if e.get("class") == "axis" and e.get("y1") == e.get("y2"))
    left, right = float(axis.get("x1")), float(axis.get("x2"))
    expected = left + (17 + (14 * 3600 + 5 * 60 + 9) / 86400) / 30 * (right - left)
    assert float(marks[0].get("x1")) == pytest.approx(expected, abs=0.05)
    # The budget line is drawn at 5,000 on the y axis, and only on the budgeted charts.
    dashed = [e for e in svg.iter("line") if e.get("stroke-dasharray")]
    assert len(dashed) == 1
    for other in ("new-wallet-bonus", "weekend-3x"):
        chart = chart_of(html, other)
        assert not [e for e in chart.iter() if e.get("class") == "ran-out"]
        assert len([e for e in chart.iter("line") if e.get("stroke-dasharray")]) == (
            other == "weekend-3x")
    points_axis = [t.text for t in chart_of(html, "weekend-3x").iter("text")]
    assert "200k" in points_axis  # the points budget's scale, not money's


def test_a_budget_far_above_the_spending_is_named_not_drawn():
    """Drawn to scale, 4,995.88 against 100,000.00 would lie flat along zero."""
    result = sample_result()
    result.campaigns[1].budget = Decimal("100000.00")
    result.campaigns[1].budget_exhausted_at = None
    html = render_report(result)
    chart = chart_of(html, "spring-dining")
    assert not [e for e in chart.iter("line") if e.get("stroke-dasharray")]
    assert [t.text for t in chart.iter("text")][:4] == ["0", "2,000", "4,000", "6,000"]
    assert "Budget 100,000.00 CNY, far above the line" in html
    assert "Used 4,995.88 CNY of 100,000.00 CNY (4%)" in html


def test_the_chinese_report_is_chinese_with_whole_ticks_for_counts():
    html = render_report(sample_result(), language="zh")
    assert html.startswith('<!DOCTYPE html>\n<html lang="zh-Hans">')
    assert "2026-11-18 14:05 +08:00 用完（Asia/Shanghai）" in html
    assert ">11月18日用完<" in html
    rows = table(html)
    assert rows["weekend-3x"]["budget"] == "200,000 积分"
    assert rows["total"]["campaign"] == "合计"
    narrow = ET.fromstring(re.search(r'<svg class="chart-narrow".*?</svg>', html).group(0))
    labels = [t.text for t in narrow.iter("text")]
    # Whole numbers of rewards (the -1 of the 30th gets no tick of its own); dates by week,
    # the month named once.
    assert labels == ["0", "100", "200", "300", "11月2日", "9日", "16日", "23日", "30日"]
    with pytest.raises(ValueError, match="language must be one of en, zh, not 'fr'"):
        render_report(sample_result(), language="fr")


def test_a_result_without_campaigns_or_events_still_renders(tmp_path):
    empty = SimulationResult(currency="CNY", events=0, skipped=0, base_points=0, campaigns=[],
                             totals_rewards=0, totals_cost=Decimal("0"), totals_points=0,
                             first_day=None, last_day=None)
    path = write_report(empty, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "No events" in text and "No campaigns were simulated." in text and "<svg" not in text


def test_one_quiet_day_gets_sensible_axes():
    """A campaign that granted nothing, without a budget, over a single day."""
    quiet = CampaignResult(
        campaign_id="quiet", name="Quiet", type="holiday_discount", timezone="Asia/Shanghai",
        rewards=0, users=0, cost=Decimal("0"), points=0, budget_unit=None, budget=None,
        max_redemptions=None, budget_exhausted_at=None, days=[])
    result = SimulationResult(currency="CNY", events=5, skipped=0, base_points=50,
                              campaigns=[quiet], totals_rewards=0, totals_cost=Decimal("0"),
                              totals_points=0, first_day=FIRST, last_day=FIRST)
    html = render_report(result)
    assert [t.text for t in chart_of(html, "quiet").iter("text")] == [
        "0", "0.25", "0.5", "0.75", "1", "Nov 1"]
    narrow = ET.fromstring(re.search(r'<svg class="chart-narrow".*?</svg>', html).group(0))
    assert [t.text for t in narrow.iter("text")] == ["0", "1", "Nov 1"]
    assert table(html)["quiet"]["budget"] == "No budget"


# -- in the browser ----------------------------------------------------------------------------

# Every drawn piece of text at its drawn size: CSS font size times the SVG's scale, and the
# table's labels drawn by ::before on a phone.
TEXT_SIZES_JS = """() => {
  const found = [], seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el) || el.closest("title")) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    if (![...range.getClientRects()].some(r => r.width > 0 && r.height > 0)) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible" || Number(style.opacity) === 0) continue;
    seen.add(el);
    let size = parseFloat(style.fontSize);
    if (el instanceof SVGElement) {
      const m = el.getScreenCTM();
      size *= Math.hypot(m.a, m.b);
    }
    found.push({text: node.textContent.trim().slice(0, 40), size, svg: el instanceof SVGElement});
  }
  for (const el of document.querySelectorAll("[data-label]")) {
    const before = getComputedStyle(el, "::before");
    if (el.getClientRects().length && before.content !== "none" && before.content !== "normal")
      found.push({text: "::before " + before.content, size: parseFloat(before.fontSize),
                  svg: false});
  }
  return found;
}"""

# What sticks out of the window, is cut off or scrolls sideways, and chart labels that overlap.
LAYOUT_JS = """() => {
  const width = document.documentElement.clientWidth, problems = [];
  const name = el => el.tagName.toLowerCase() + (el.className && typeof el.className === "string"
    ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  if (document.documentElement.scrollWidth > width)
    problems.push(`the page is ${document.documentElement.scrollWidth}px wide in ${width}px`);
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -0.5 || r.right > width + 0.5)
      problems.push(`${name(el)} "${el.textContent.trim().slice(0, 30)}" spans ` +
                    `${r.left.toFixed(1)}..${r.right.toFixed(1)}px`);
    if (!(el instanceof SVGElement) && getComputedStyle(el).overflowX !== "visible" &&
        el.scrollWidth > el.clientWidth + 1)
      problems.push(`${name(el)} shows ${el.clientWidth}px of ${el.scrollWidth}px`);
  }
  for (const svg of document.querySelectorAll("svg")) {
    const boxes = [...svg.querySelectorAll("text")].map(t => [t, t.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0);
    boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom)
        problems.push(`"${a.textContent}" overlaps "${b.textContent}"`);
    }));
  }
  return problems;
}"""


@pytest.mark.e2e
@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_report_reads_well_on_a_laptop_and_a_phone(
        browser, tmp_path, lang, device):
    path = write_report(sample_result(), tmp_path / "report.html", language=lang)
    context = browser.new_context(viewport=VIEWPORTS[device], offline=True)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path.as_uri())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"simulate-report-{lang}-{device}.png"),
                        full_page=True)
        assert requested == [path.as_uri()] and errors == []
        assert page.evaluate("document.documentElement.clientWidth") == \
            VIEWPORTS[device]["width"]
        texts = page.evaluate(TEXT_SIZES_JS)
        assert sum(t["svg"] for t in texts) >= 30, texts  # the charts' labels were measured
        small = [t for t in texts if t["size"] < 11]
        assert small == [], small
        assert page.evaluate(LAYOUT_JS) == []
        shown = "chart-wide" if device == "desktop" else "chart-narrow"
        assert page.locator(f"svg.{shown}").is_visible()
        assert page.locator("svg.chart-wide, svg.chart-medium, svg.chart-narrow").evaluate_all(
            "svgs => svgs.filter(s => s.getClientRects().length).length") == 1
        ran_out = page.locator('[data-campaign-id="spring-dining"] svg text.ran-out')
        assert ran_out.is_visible()
        assert ran_out.text_content() == ("ran out Nov 18" if lang == "en" else "11月18日用完")
        cost = page.locator('tr[data-campaign-id="spring-dining"] td[data-col="cost"]')
        assert cost.is_visible() and cost.inner_text() == "4,995.88"
    finally:
        context.close()


@pytest.mark.e2e
@pytest.mark.parametrize("make", [sample_result, year_result], ids=["month", "year"])
def test_no_small_text_nor_sideways_scrolling_between_a_small_phone_and_a_wide_screen(
        browser, tmp_path, make):
    """Each width where the layout changes (the charts' variants, the table's cards), both
    sides of it, and a year of twelve long-named campaigns in yen."""
    problems = []
    context = browser.new_context(offline=True)
    page = context.new_page()
    try:
        for lang in ("en", "zh"):
            path = write_report(make(), tmp_path / f"report-{lang}.html", language=lang)
            for width in (320, 360, 639, 640, 899, 900, 999, 1000, 1920):
                page.set_viewport_size({"width": width, "height": 800})
                page.goto(path.as_uri())
                where = f"{lang} at {width}px"
                problems += [f"{where}: {t['text']!r} is {t['size']:.1f}px"
                             for t in page.evaluate(TEXT_SIZES_JS) if t["size"] < 11]
                problems += [f"{where}: {problem}" for problem in page.evaluate(LAYOUT_JS)]
    finally:
        context.close()
    assert problems == []
