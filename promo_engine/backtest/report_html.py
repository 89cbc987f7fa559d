"""The back-test as a page for people (`campaigns simulate --html`): what each campaign would
have cost, day by day against its budget, and the totals.

One self-contained HTML file: inline CSS and inline SVG, no script, no font or file fetched,
so it can be mailed, archived and opened offline. It is laid out for a laptop and a phone
alike, with no text under 11 CSS px at either width (report_charts keeps the charts' labels
so). The table's money is Decimal with the currency's digits; only the charts use floats.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from html import escape
from pathlib import Path

from promo_engine.backtest import report_charts as charts
from promo_engine.backtest.results import CampaignResult, SimulationResult
from promo_engine.core.money import quantum

LANGUAGES = {"en": "en", "zh": "zh-Hans"}  # the report's languages -> <html lang>

# Distinct hues, none of them the red of "ran out"; past ten campaigns they repeat (the cards
# and the table name each campaign; the per-day chart's legend is then ambiguous).
COLORS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#0891b2", "#c026d3", "#65a30d",
          "#475569", "#ca8a04", "#1e3a8a"]

TEXT = {
    "en": {
        "title": "Back-test report", "period": "Events of {first} to {last}",
        "no_events": "No events", "cost": "Cost", "rewards": "Rewards", "users": "Users",
        "points": "Points", "events": "Events", "skipped": "{n} skipped",
        "base_points": "base points {n}", "campaigns": "Campaigns",
        "budget": "Budget", "ran_out_at": "Ran out", "campaign": "Campaign", "total": "Total",
        "no_budget": "No budget", "max_rewards": "max {n} rewards", "points_unit": "points",
        "cum_cost": "Cost to date ({currency})", "cum_points": "Points to date",
        "with_unit": "{label} ({unit})",
        "used": "Used {used} of {budget} ({percent}%)",
        "budget_above": "Budget {budget}, far above the line",
        "ran_out_on": "Ran out on {when} ({zone})", "ran_out_short": "ran out {day}",
        "legend_ran_out": "ran out", "per_day": "Rewards per day",
        "per_day_note": "All campaigns, net of reversals; one colour per campaign.",
        "totals": "Totals",
        "no_campaigns": "No campaigns were simulated.",
        "footer": "The figures are what the live service would have granted for the same "
                  "events, posted in the same order to a service with these campaigns open. "
                  "Days are in each campaign's timezone.",
    },
    "zh": {
        "title": "活动回测报告", "period": "事件期间 {first} 至 {last}",
        "no_events": "没有事件", "cost": "成本", "rewards": "奖励次数", "users": "用户数",
        "points": "积分", "events": "事件", "skipped": "跳过 {n} 条",
        "base_points": "基础积分 {n}", "campaigns": "活动",
        "budget": "预算", "ran_out_at": "用完时间", "campaign": "活动", "total": "合计",
        "no_budget": "无预算", "max_rewards": "最多 {n} 次", "points_unit": "积分",
        "cum_cost": "累计成本（{currency}）", "cum_points": "累计积分",
        "used": "已用 {used} / {budget}（{percent}%）",
        "budget_above": "预算 {budget}，远在曲线上方",
        "ran_out_on": "{when} 用完（{zone}）", "ran_out_short": "{day}用完",
        "legend_ran_out": "用完", "per_day": "每日奖励次数",
        "per_day_note": "全部活动，已扣除冲正；每个活动一种颜色。",
        "totals": "合计", "with_unit": "{label}（{unit}）",
        "no_campaigns": "没有回测任何活动。",
        "footer": "这些数字是：同样的事件按同样的顺序发送到开启了这些活动的服务时，线上服务会发放的奖励。"
                  "日期按各活动的时区计算。",
    },
}

CSS = """
:root { --fg: #111827; --muted: #4b5563; --line: #e5e7eb; --bg: #f6f7f9; --card: #fff;
  --alert: #b91c1c; color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue",
  Arial, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 16px 40px; }
h1 { font-size: 28px; line-height: 1.2; margin: 0 0 6px; }
h2 { font-size: 20px; margin: 32px 0 12px; }
h3 { font-size: 17px; margin: 0; overflow-wrap: anywhere; }
p { margin: 0; }
.muted { color: var(--muted); font-size: 14px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr));
  gap: 12px; margin-top: 20px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; }
.tile b { display: block; font-size: 22px; line-height: 1.25; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px; min-width: 0; }
.cards { display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 340px), 1fr)); }
.campaign { border-top: 4px solid var(--accent); }
.campaign .meta { margin: 2px 0 8px; overflow-wrap: anywhere; }
.campaign .status { font-size: 15px; margin-bottom: 8px; }
.campaign .status .alert { color: var(--alert); font-weight: 600; }
.rewards-per-day svg { margin-top: 10px; }
.chart-title { font-size: 14px; font-weight: 600; color: var(--muted); margin: 4px 0; }
svg { display: block; width: 100%; height: auto; }
svg text { fill: #374151; }
svg text.ran-out { fill: var(--alert); font-weight: 600; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
.campaign svg { max-width: 440px; }
.chart-wide { max-width: 1200px; }
.chart-medium { display: none; max-width: 860px; }
.chart-narrow { display: none; max-width: 480px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 8px 0 0; padding: 0;
  list-style: none; font-size: 14px; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: 6px; min-width: 0;
  overflow-wrap: anywhere; }
.legend svg.key { width: 22px; height: 12px; flex: none; }
table.totals { width: 100%; border-collapse: collapse; font-size: 15px;
  font-variant-numeric: tabular-nums; background: var(--card); }
.totals th, .totals td { padding: 8px 10px; border-bottom: 1px solid var(--line);
  text-align: right; vertical-align: top; }
.totals th { font-size: 14px; color: var(--muted); font-weight: 600; }
.totals th:first-child, .totals td:first-child { text-align: left; }
.totals td:first-child { overflow-wrap: anywhere; }
.totals td[data-col=rewards], .totals td[data-col=users], .totals td[data-col=cost],
.totals td[data-col=points], .totals .nowrap {
  white-space: nowrap; }
.totals .id { display: block; color: var(--muted); font-size: 13px; font-weight: 400; }
.totals tfoot td { font-weight: 700; border-top: 2px solid var(--fg); border-bottom: 0; }
.totals .alert { color: var(--alert); font-weight: 600; }
footer { margin-top: 28px; }
@media (max-width: 999px) {
  .chart-wide { display: none; }
  .chart-medium { display: block; }
}
@media (max-width: 639px) {
  .chart-medium { display: none; }
  .chart-narrow { display: block; }
}
.table-wrap { overflow-x: auto; }
/* Below a laptop's width the table becomes a card per campaign, two side by side on a tablet. */
@media (max-width: 899px) {
  table.totals, .totals tfoot, .totals tr, .totals td { display: block; }
  .totals tbody { display: grid; gap: 10px; margin-bottom: 10px;
    grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr)); }
  table.totals { background: none; }
  .totals thead { display: none; }
  .totals tr { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
    padding: 8px 12px; min-width: 0; }
  .totals td { display: flex; justify-content: space-between; gap: 12px; border: 0;
    padding: 3px 0; text-align: right; }
  .totals td::before { content: attr(data-label); color: var(--muted); text-align: left;
    font-weight: 400; flex: none; }
  .totals td .value { min-width: 0; }
  .totals td:first-child { display: block; font-weight: 600; padding-bottom: 6px; }
  .totals td:first-child::before { content: none; }
  .totals tfoot td { border-top: 0; }
  .totals td:empty { display: none; }
}
@media (max-width: 480px) {
  main { padding: 18px 12px 32px; }
  h1 { font-size: 24px; }
  .card { padding: 12px; }
  .tiles { grid-template-columns: 1fr 1fr; gap: 10px; }
  .tile { padding: 10px 12px; }
  .tile b { font-size: 20px; }
}
"""


def format_money(amount: Decimal, currency: str) -> str:
    """The currency's digits exactly, thousands grouped: 12,345.60 (CNY), 12,346 (JPY)."""
    return format(amount.quantize(quantum(currency), rounding=ROUND_HALF_UP), ",")


def format_count(count: int) -> str:
    return f"{count:,}"


def format_moment(moment: datetime) -> str:
    """The campaign's wall-clock time and its offset: 2026-11-18 14:05 +08:00."""
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}" if offset else \
        f"{moment:%Y-%m-%d %H:%M}"


def budget_parts(campaign: CampaignResult, currency: str, text: dict) -> list[str]:
    """The budget, the cap on rewards, both, or "No budget"."""
    parts = []
    if campaign.budget is not None and campaign.budget_unit == "money":
        parts.append(f"{format_money(Decimal(campaign.budget), currency)} {currency}")
    elif campaign.budget is not None and campaign.budget_unit == "points":
        parts.append(f"{format_count(int(campaign.budget))} {text['points_unit']}")
    if campaign.max_redemptions is not None:
        parts.append(text["max_rewards"].format(n=format_count(campaign.max_redemptions)))
    return parts or [text["no_budget"]]


def format_budget(campaign: CampaignResult, currency: str, text: dict) -> str:
    return " · ".join(budget_parts(campaign, currency, text))


def _used(campaign: CampaignResult, currency: str, text: dict) -> str:
    """'Used X of Y (Z%)' for a money or points budget, else ''."""
    if campaign.budget is None or campaign.budget_unit not in ("money", "points"):
        return ""
    if campaign.budget_unit == "money":
        used, budget = campaign.cost, Decimal(campaign.budget)
        shown_used = f"{format_money(used, currency)} {currency}"
    else:
        used, budget = Decimal(campaign.points), Decimal(int(campaign.budget))
        shown_used = format_count(campaign.points)
    percent = (used * 100 / budget).quantize(Decimal(1), rounding=ROUND_DOWN) if budget else 0
    parts = budget_parts(campaign, currency, text)
    used = text["used"].format(used=shown_used, budget=parts[0], percent=percent)
    return " · ".join([used, *parts[1:]])


def _key(kind: str, color: str) -> str:
    """A legend's swatch: a line, a dashed line, a bar or a red mark (no text)."""
    shapes = {
        "line": f'<line x1="1" x2="21" y1="6" y2="6" stroke="{color}" stroke-width="3"/>',
        "dash": f'<line x1="1" x2="21" y1="6" y2="6" stroke="{color}" stroke-width="2" '
                f'stroke-dasharray="5 3"/>',
        "mark": f'<line x1="11" x2="11" y1="0" y2="12" stroke="{color}" stroke-width="3"/>',
        "bar": f'<rect x="4" y="0" width="14" height="12" rx="2" fill="{color}"/>',
        "above": f'<path d="M11 11V2M6 6l5-5 5 5" fill="none" stroke="{color}" '
                 f'stroke-width="2"/>',
    }
    return f'<svg class="key" viewBox="0 0 22 12" aria-hidden="true">{shapes[kind]}</svg>'


def _campaign_card(campaign: CampaignResult, color: str, domain: charts.Domain | None,
                   currency: str, language: str, text: dict) -> str:
    unit = charts.chart_unit(campaign)
    chart_title = text["cum_points"] if unit == "points" else \
        text["cum_cost"].format(currency=currency)
    status = []
    used = _used(campaign, currency, text)
    status.append(escape(used) if used else escape(format_budget(campaign, currency, text)))
    if campaign.budget_exhausted_at is not None:
        status.append('<span class="alert">' + escape(text["ran_out_on"].format(
            when=format_moment(campaign.budget_exhausted_at), zone=campaign.timezone)) + "</span>")
    legend = [f'<li>{_key("line", color)}{escape(chart_title)}</li>', ""]
    if campaign.budget_exhausted_at is not None:
        legend.append(f'<li>{_key("mark", charts.ALERT)}{escape(text["legend_ran_out"])} '
                      f'{escape(format_moment(campaign.budget_exhausted_at))}</li>')
    chart = ""
    if domain is not None:
        ran_out = ""
        if campaign.budget_exhausted_at is not None:
            ran_out = text["ran_out_short"].format(
                day=charts.day_label(campaign.budget_exhausted_at.date(), language))
        svg, budget_drawn = charts.cumulative_chart(
            campaign, domain, color=color, title=f"{campaign.name}: {chart_title}",
            ran_out=ran_out, language=language)
        if campaign.budget is not None and campaign.budget_unit == unit:
            budget = budget_parts(campaign, currency, text)[0]
            legend[1] = (f'<li>{_key("dash", charts.BUDGET)}{escape(text["budget"])} '
                         f'{escape(budget)}</li>' if budget_drawn else
                         f'<li>{_key("above", charts.BUDGET)}'
                         f'{escape(text["budget_above"].format(budget=budget))}</li>')
        chart = (f'<p class="chart-title">{escape(chart_title)}</p>{svg}'
                 f'<ul class="legend">{"".join(legend)}</ul>')
    return (f'<article class="card campaign" style="--accent: {color}" '
            f'data-campaign-id="{escape(campaign.campaign_id)}">'
            f'<h3>{escape(campaign.name)}</h3>'
            f'<p class="meta muted">{escape(campaign.campaign_id)} · {escape(campaign.type)} · '
            f'{escape(campaign.timezone)}</p>'
            f'<p class="status">{"<br>".join(status)}</p>{chart}</article>')


def _cell(column: str, label: str, content: str) -> str:
    # One element for the content: on a phone the cell is a row of its label and its value.
    return (f'<td data-col="{column}" data-label="{escape(label)}">'
            f'<span class="value">{content}</span></td>' if content else
            f'<td data-col="{column}" data-label="{escape(label)}"></td>')


def _totals_table(result: SimulationResult, text: dict) -> str:
    currency = result.currency
    labels = {"campaign": text["campaign"], "rewards": text["rewards"], "users": text["users"],
              "cost": text["with_unit"].format(label=text["cost"], unit=currency),
              "points": text["points"],
              "budget": text["budget"], "ran_out": text["ran_out_at"]}
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in labels.values())
    rows = []
    for campaign in result.campaigns:
        ran_out = ""
        if campaign.budget_exhausted_at is not None:
            moment = campaign.budget_exhausted_at
            day, time = format_moment(moment).split(" ", 1)  # may break between the two
            ran_out = (f'<time class="alert" datetime="{moment.isoformat()}" '
                       f'title="{escape(campaign.timezone)}"><span class="nowrap">{day}</span> '
                       f'<span class="nowrap">{time}</span></time>')
        cells = [
            _cell("campaign", labels["campaign"], f'{escape(campaign.name)}'
                  f'<span class="id">{escape(campaign.campaign_id)}</span>'),
            _cell("rewards", labels["rewards"], format_count(campaign.rewards)),
            _cell("users", labels["users"], format_count(campaign.users)),
            _cell("cost", labels["cost"], format_money(campaign.cost, currency)),
            _cell("points", labels["points"], format_count(campaign.points)),
            # Broken between the budget and the cap, never inside "10,000,000 points".
            _cell("budget", labels["budget"], " · ".join(
                f'<span class="nowrap">{escape(part)}</span>'
                for part in budget_parts(campaign, currency, text))),
            _cell("ran_out", labels["ran_out"], ran_out or "—"),
        ]
        rows.append(f'<tr data-campaign-id="{escape(campaign.campaign_id)}">{"".join(cells)}</tr>')
    # Users are not added up: one user may have rewards from several campaigns.
    total = [_cell("campaign", labels["campaign"], escape(text["total"])),
             _cell("rewards", labels["rewards"], format_count(result.totals_rewards)),
             _cell("users", labels["users"], ""),
             _cell("cost", labels["cost"], format_money(result.totals_cost, currency)),
             _cell("points", labels["points"], format_count(result.totals_points)),
             _cell("budget", labels["budget"], ""), _cell("ran_out", labels["ran_out"], "")]
    # The wrapper scrolls sideways only if sums too long for a laptop's table ever come.
    return (f'<div class="table-wrap"><table class="totals"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody>'
            f'<tfoot><tr data-total="1">{"".join(total)}</tr></tfoot></table></div>')


def _rewards_section(result: SimulationResult, domain: charts.Domain, language: str,
                     text: dict) -> str:
    colors = [COLORS[i % len(COLORS)] for i in range(len(result.campaigns))]
    title = text["per_day"]
    svgs = "".join(charts.rewards_chart(result.campaigns, colors, domain, title=title,
                                        language=language, frame=frame, cls=cls,
                                        tooltips=frame is charts.WIDE)
                   for frame, cls in ((charts.WIDE, "chart-wide"),
                                      (charts.MEDIUM, "chart-medium"),
                                      (charts.NARROW, "chart-narrow")))
    legend = "".join(f'<li>{_key("bar", color)}{escape(campaign.name)}</li>'
                     for campaign, color in zip(result.campaigns, colors))
    return (f'<h2>{escape(title)}</h2><section class="card rewards-per-day">'
            f'<p class="muted">{escape(text["per_day_note"])}</p>{svgs}'
            f'<ul class="legend">{legend}</ul></section>')


def _tile(value: str, label: str) -> str:
    return (f'<div class="tile"><b>{escape(value)}</b>'
            f'<span class="muted">{escape(label)}</span></div>')


def _period(first: date | None, last: date | None, text: dict) -> str:
    if first is None or last is None:
        return text["no_events"]
    return text["period"].format(first=first.isoformat(), last=last.isoformat())


def render_report(result: SimulationResult, *, language: str = "en") -> str:
    """The report as one HTML document (a str), in English ("en") or Chinese ("zh")."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    text = TEXT[language]
    currency = result.currency
    domain = charts.domain_of(result.first_day, result.last_day, result.campaigns)
    events_label = text["events"]
    if result.skipped:
        events_label += " · " + text["skipped"].format(n=format_count(result.skipped))
    tiles = "".join([
        _tile(format_money(result.totals_cost, currency),
              text["with_unit"].format(label=text["cost"], unit=currency)),
        _tile(format_count(result.totals_rewards), text["rewards"]),
        _tile(format_count(result.totals_points), text["points"]),
        _tile(format_count(result.events), events_label)])
    body = [f'<h1>{escape(text["title"])}</h1>',
            f'<p class="muted">{escape(_period(result.first_day, result.last_day, text))} · '
            f'{escape(currency)} · '
            f'{escape(text["base_points"].format(n=format_count(result.base_points)))}</p>',
            f'<div class="tiles">{tiles}</div>']
    if result.campaigns:
        cards = "".join(_campaign_card(campaign, COLORS[i % len(COLORS)], domain, currency,
                                       language, text)
                        for i, campaign in enumerate(result.campaigns))
        body.append(f'<h2>{escape(text["campaigns"])}</h2><div class="cards">{cards}</div>')
        if domain is not None:
            body.append(_rewards_section(result, domain, language, text))
        body.append(f'<h2>{escape(text["totals"])}</h2>{_totals_table(result, text)}')
    else:
        body.append(f'<p>{escape(text["no_campaigns"])}</p>')
    body.append(f'<footer class="muted">{escape(text["footer"])}</footer>')
    return (f'<!DOCTYPE html>\n<html lang="{LANGUAGES[language]}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(text["title"])}</title><style>{CSS}</style></head>'
            f'<body><main>{"".join(body)}</main></body></html>\n')


def write_report(result: SimulationResult, path: str | Path, *, language: str = "en") -> Path:
    """Write the report to `path` (UTF-8) and return the path."""
    target = Path(path)
    target.write_text(render_report(result, language=language), encoding="utf-8")
    return target
