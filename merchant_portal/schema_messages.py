"""Simplified Chinese for the campaign schema's validation messages.

The schema is shared with YAML campaigns and the CLI, where its messages stay English;
the portal shows them in the merchant's language. Messages carry values (limits, names),
so they are matched as patterns; one without a translation is shown as it is.
"""
from __future__ import annotations

import re

from flask_babel import get_locale

ZH_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"Missing data for required field\.", "必填"),
    (r"must not be empty: give a value or remove the key", "不能为空"),
    (r"must be between (\S+) and (\S+)", r"必须在 \1 到 \2 之间"),
    (r"must be a whole number from (\S+) to (\S+)", r"必须是 \1 到 \2 之间的整数"),
    (r"must be greater than (\S+)", r"必须大于 \1"),
    (r"must be at most (\S+)", r"不能超过 \1"),
    (r"at most (\d+) decimal places for (\w+)", r"\2 最多 \1 位小数"),
    (r"at most (\d+) decimal places", r"最多 \1 位小数"),
    (r'must be a (?:decimal )?string such as "[\d.]+"(?:, not a number)?', "请填写金额，例如 12.50"),
    (r'write money as a quoted string, e\.g\. "[\d.]+"', "请填写金额，例如 30.00"),
    (r"must be a finite (?:number|decimal)", "请填写有效数字"),
    (r"must be a whole number", "请填写整数"),
    (r"must be a number", "请填写数字"),
    (r"is out of range", "超出范围"),
    (r"must be after starts_at", "必须晚于开始时间"),
    (r"must be a date and time such as (\S+)", r"请填写日期和时间，例如 \1"),
    (r"must be after from; windows cannot cross midnight.*", "结束时间必须晚于开始时间；时段不能跨过午夜，请拆成两个时段"),
    (r"give exactly one of percent or amount_off", "折扣百分比与立减金额请二选一"),
    (r"max_discount goes with percent", "最高优惠需与折扣百分比一起填写"),
    (r"give exactly one of amount(?: \(money\))? or points", "预算金额与预算积分请二选一"),
    (r"this campaign grants points: use budget\.points", "此优惠发放积分：请填写预算（积分）"),
    (r"this campaign grants money: use budget\.amount", "此优惠发放金额：请填写预算（金额）"),
    (r"must be 1 to 200 characters", "长度须为 1 到 200 个字符"),
    (r"'(.+)' is not an IANA time zone.*", r"\1 不是有效的时区（例如 Asia/Shanghai）"),
)
_COMPILED = tuple((re.compile(pattern), template) for pattern, template in ZH_PATTERNS)


def in_portal_language(message: str) -> str:
    """The message in the request's language (English, or Simplified Chinese)."""
    locale = get_locale()
    if locale is None or locale.language != "zh":
        return message
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(message)
        if match:
            return match.expand(template)
    return message
