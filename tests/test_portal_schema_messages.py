"""The campaign schema's messages appear in the portal in the merchant's language."""
from __future__ import annotations

import pytest
from flask import Flask
from flask_babel import Babel, force_locale

from merchant_portal.schema_messages import in_portal_language


@pytest.fixture(scope="module")
def babel_app():
    app = Flask(__name__)
    Babel(app)
    return app


@pytest.mark.parametrize("english, chinese", [
    ("must be between 0 and 100", "必须在 0 到 100 之间"),
    ("must be a whole number from 1 to 100000000", "必须是 1 到 100000000 之间的整数"),
    ("at most 2 decimal places for CNY", "CNY 最多 2 位小数"),
    ("must be after starts_at", "必须晚于开始时间"),
    ("give exactly one of percent or amount_off", "折扣百分比与立减金额请二选一"),
    ("Missing data for required field.", "必填"),
    ("'Mars/Base' is not an IANA time zone (e.g. Asia/Shanghai)",
     "Mars/Base 不是有效的时区（例如 Asia/Shanghai）"),
])
def test_schema_messages_in_chinese(babel_app, english, chinese):
    with babel_app.test_request_context(), force_locale("zh_Hans"):
        assert in_portal_language(english) == chinese


def test_english_and_unknown_messages_stay_as_they_are(babel_app):
    with babel_app.test_request_context():
        with force_locale("en"):
            assert in_portal_language("must be between 0 and 100") == "must be between 0 and 100"
        with force_locale("zh_Hans"):
            assert in_portal_language("a brand new message") == "a brand new message"
