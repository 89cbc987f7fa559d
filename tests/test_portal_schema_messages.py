"""The campaign schema's messages appear in the portal in a shop owner's words, in the
merchant's language (the CLI and YAML campaigns keep the schema's own wording)."""
from __future__ import annotations

import pytest
from flask_babel import force_locale

from merchant_portal.schema_messages import in_portal_language


@pytest.mark.parametrize("schema, english, chinese", [
    ("must be between 0 and 100", "Enter a number from 0 to 100", "请填写 0 到 100 之间的数字"),
    ("must be a whole number from 1 to 100000000", "Enter a whole number from 1 to 100,000,000",
     "请填写 1 到 100,000,000 之间的整数"),
    ("at most 2 decimal places for CNY", "Use at most 2 digits after the decimal point",
     "小数点后最多 2 位"),
    ("must be after starts_at", "The end must be later than the start", "结束时间必须晚于开始时间"),
    ("give exactly one of percent or amount_off",
     "Enter either a percentage off or an amount off, not both", "请填写折扣百分比或立减金额，二选一"),
    ("this campaign grants points: use budget.points",
     "This offer gives points: set its budget in points", "此优惠发放积分：请以积分设定预算"),
    ("Missing data for required field.", "Please fill in this field", "请填写此项"),
    ("'Mars/Base' is not an IANA time zone (e.g. Asia/Shanghai)",
     "Choose a time zone from the list", "请从列表中选择时区"),
    ("a brand new message", "Please check this value", "请检查此项"),
])
def test_schema_messages_in_both_languages(app, schema, english, chinese):
    with app.test_request_context():
        with force_locale("en"):
            assert in_portal_language(schema) == english
        with force_locale("zh_Hans"):
            assert in_portal_language(schema) == chinese
