"""Every message the offer form can show is worded for a shop owner, in English and in
Chinese: each validation failure the form can produce is driven through the form, and what
it shows is the portal's catalogue text, never the schema's developer wording (which names
keys such as `budget.points`), and in Chinese never mixed with English."""
from __future__ import annotations

import re

import pytest

from merchant_portal import schema_messages
from test_portal_support import MULTIPLIER, OFFER, accounts, merchant_a  # noqa: F401

# (what is posted, {field: [English]}, {field: [Chinese]})
CASES = [
    ({"type": "points_multiplier", "timezone": "Asia/Shanghai"},
     {"starts_at": ["Please fill in this field"], "ends_at": ["Please fill in this field"],
      "multiplier": ["Please fill in this field"]},
     {"starts_at": ["请填写此项"], "ends_at": ["请填写此项"], "multiplier": ["请填写此项"]}),
    ({**OFFER, "per_user": "three"},
     {"per_user": ["Enter a whole number"]}, {"per_user": ["请填写整数"]}),
    ({**OFFER, "per_user": "0", "budget_amount": "", "max_redemptions": "2000000000"},
     {"per_user": ["Enter a whole number from 1 to 1,000,000,000"],
      "max_redemptions": ["Enter a whole number from 1 to 1,000,000,000"]},
     {"per_user": ["请填写 1 到 1,000,000,000 之间的整数"],
      "max_redemptions": ["请填写 1 到 1,000,000,000 之间的整数"]}),
    ({**OFFER, "percent": "150"},
     {"percent": ["Enter a number from 0 to 100"]}, {"percent": ["请填写 0 到 100 之间的数字"]}),
    ({**MULTIPLIER, "multiplier": "1"},
     {"multiplier": ["Enter a number greater than 1"]},
     {"multiplier": ["请填写大于 1 的数字"]}),
    ({**MULTIPLIER, "multiplier": "101"},
     {"multiplier": ["Enter a number no greater than 100"]},
     {"multiplier": ["请填写不超过 100 的数字"]}),
    ({**MULTIPLIER, "multiplier": "2.555"},
     {"multiplier": ["Use at most 2 digits after the decimal point"]},
     {"multiplier": ["小数点后最多 2 位"]}),
    ({**MULTIPLIER, "multiplier": "double"},
     {"multiplier": ["Enter a number, such as 2 or 1.5"]},
     {"multiplier": ["请填写数字，例如 2 或 1.5"]}),
    ({**MULTIPLIER, "multiplier": "Infinity"},
     {"multiplier": ["Enter a number, such as 2 or 1.5"]},
     {"multiplier": ["请填写数字，例如 2 或 1.5"]}),
    ({**OFFER, "percent": "", "max_discount": "", "amount_off": "1.234"},
     {"amount_off": ["Use at most 2 digits after the decimal point"]},
     {"amount_off": ["小数点后最多 2 位"]}),
    ({**OFFER, "percent": "", "max_discount": "", "amount_off": "ten"},
     {"amount_off": ["Enter an amount such as 12.50"]},
     {"amount_off": ["请填写金额，例如 12.50"]}),
    ({**OFFER, "percent": "", "max_discount": "", "amount_off": "0"},
     {"amount_off": ["Enter a number greater than 0"]},
     {"amount_off": ["请填写大于 0 的数字"]}),
    ({**OFFER, "min_amount": "-5"},
     {"min_amount": ["Enter a number greater than 0"]},
     {"min_amount": ["请填写大于 0 的数字"]}),
    ({**OFFER, "ends_at": "2025-01-01T00:00"},
     {"ends_at": ["The end must be later than the start"]},
     {"ends_at": ["结束时间必须晚于开始时间"]}),
    ({**OFFER, "starts_at": "tomorrow"},
     {"starts_at": ["Enter a date and a time"]}, {"starts_at": ["请填写日期和时间"]}),
    ({**OFFER, "window_from": "25:00"},
     {"window_from": ["Enter a time such as 11:00 (24:00 for the end of the day)"]},
     {"window_from": ["请按 11:00 的格式填写时间（一天结束填 24:00）"]}),
    ({**OFFER, "window_from": "14:00", "window_to": "11:00"},
     {"window_to": ["The end time must be later than the start time; hours cannot run past "
                    "midnight (end at 24:00)"]},
     {"window_to": ["结束时间必须晚于开始时间；时段不能跨过午夜（最晚到 24:00）"]}),
    ({**OFFER, "window_days": ["someday"]},
     {"window_days": ["Choose days of the week"]}, {"window_days": ["请选择星期几"]}),
    ({**OFFER, "amount_off": "10.00", "max_discount": ""},
     {"percent": ["Enter either a percentage off or an amount off, not both"]},
     {"percent": ["请填写折扣百分比或立减金额，二选一"]}),
    ({**OFFER, "percent": "", "max_discount": ""},
     {"percent": ["Enter either a percentage off or an amount off, not both"]},
     {"percent": ["请填写折扣百分比或立减金额，二选一"]}),
    ({**OFFER, "percent": "", "amount_off": "10.00"},
     {"max_discount": ["A maximum discount only goes with a percentage off"]},
     {"max_discount": ["最高优惠只能与折扣百分比一起填写"]}),
    ({**OFFER, "budget_points": "100"},
     {"budget_points": ["Enter a budget in money or in points, not both"]},
     {"budget_points": ["预算请填写金额或积分，二选一"]}),
    ({**OFFER, "budget_amount": "", "budget_points": "100"},
     {"budget_points": ["This offer gives money off: set its budget as an amount of money"]},
     {"budget_points": ["此优惠给予金额优惠：请以金额设定预算"]}),
    ({**MULTIPLIER, "budget_points": "", "budget_amount": "500.00"},
     {"budget_amount": ["This offer gives points: set its budget in points"]},
     {"budget_amount": ["此优惠发放积分：请以积分设定预算"]}),
    ({**MULTIPLIER, "budget_points": "many"},
     {"budget_points": ["Enter a whole number"]}, {"budget_points": ["请填写整数"]}),
    ({**OFFER, "name": "x" * 201},
     {"name": ["Enter a name of 1 to 200 characters"]},
     {"name": ["名称须为 1 到 200 个字符"]}),
    ({**OFFER, "timezone": "Mars/Olympus", "type": "free_money"},
     {"timezone": ["Choose a time zone from the list"],
      "type": ["Choose an offer type from the list"]},
     {"timezone": ["请从列表中选择时区"], "type": ["请从列表中选择优惠类型"]}),
]


def errors_of(response) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in re.findall(
            r'<p class="field-error" data-field="([^"]+)"[^>]*>([^<]*)</p>', response.text):
        found.setdefault(name, []).append(message)
    general = re.search(r'id="error-summary".*?</div>', response.text, re.S)
    assert general is not None, "no error summary"
    for message in re.findall(r"<li>([^<]*)</li>", general.group(0)):  # not linked to a field
        found.setdefault("", []).append(message)
    return found


@pytest.mark.parametrize("posted, english, chinese", CASES,
                         ids=[f"case{i}" for i in range(len(CASES))])
def test_every_form_failure_is_in_shop_owner_words(app, merchant_a, posted, english, chinese):
    response = merchant_a.post("/portal/offers/new", posted)
    assert response.status_code == 422
    assert errors_of(response) == english
    merchant_a.get("/portal/lang/zh")
    response = merchant_a.post("/portal/offers/new", posted)
    assert response.status_code == 422
    assert errors_of(response) == chinese
    for messages in chinese.values():
        for message in messages:  # no English words in a Chinese message
            assert not re.search(r"[A-Za-z]{2,}", message), message


def test_every_failure_the_form_produces_is_in_the_catalogue(app, merchant_a, caplog):
    """The schema messages the cases above make all have a portal wording (none falls back
    to the general "Please check this value")."""
    for posted, _english, _chinese in CASES:
        merchant_a.post("/portal/offers/new", posted)
    assert "no portal wording" not in caplog.text


def test_each_catalogue_entry_has_chinese(app):
    from flask_babel import force_locale
    with app.test_request_context(), force_locale("zh_Hans"):
        for _pattern, text in schema_messages.MESSAGES:
            chinese = str(text)
            assert chinese != text._args[0], text._args[0]
            assert not re.search(r"[A-Za-z]{2,}", re.sub(r"%\(\w+\)s", "", chinese)), chinese


@pytest.mark.parametrize("english, chinese, message", [
    ("Please check this value", "请检查此项", "a message the portal has no wording for"),
    ("Enter a whole number from 1 to 1,000,000,000", "请填写 1 到 1,000,000,000 之间的整数",
     "must be a whole number from 1 to 1000000000"),
])
def test_messages_in_both_languages(app, english, chinese, message):
    from flask_babel import force_locale
    with app.test_request_context():
        with force_locale("en"):
            assert schema_messages.in_portal_language(message) == english
        with force_locale("zh_Hans"):
            assert schema_messages.in_portal_language(message) == chinese


def test_the_summary_links_each_error_to_its_field(app, merchant_a):
    posted = {**OFFER, "percent": "150", "per_user": "three", "ends_at": "2025-01-01T00:00"}
    response = merchant_a.post("/portal/offers/new", posted)
    summary = re.search(r'<div class="flash flash-error error-summary"[^>]*>(.*?)</div>',
                        response.text, re.S).group(1)
    assert re.search(r'<p class="strong">([^<]*)</p>', summary).group(1) == (
        "The offer was not saved: fix 3 problems.")
    assert re.findall(r'<li><a href="#(\w+)" data-field="\w+">([^<]*)</a></li>', summary) == [
        ("ends_at", "Ends: The end must be later than the start"),
        ("percent", "Percent off: Enter a number from 0 to 100"),
        ("per_user", "Per customer, ever: Enter a whole number")]
    for name in ("ends_at", "percent", "per_user"):  # each link has its target
        assert f'id="{name}"' in response.text
    merchant_a.get("/portal/lang/zh")
    response = merchant_a.post("/portal/offers/new", {**OFFER, "per_user": "three"})
    summary = re.search(r'<div class="flash flash-error error-summary"[^>]*>(.*?)</div>',
                        response.text, re.S).group(1)
    assert re.search(r'<p class="strong">([^<]*)</p>', summary).group(1) == (
        "优惠未保存：请修改 1 个问题。")
    assert re.findall(r'<li><a href="#(\w+)" data-field="\w+">([^<]*)</a></li>', summary) == [
        ("per_user", "每位顾客累计：请填写整数")]
