"""docs/campaigns.md stays true: every YAML example is checked, every field is documented.

A ```yaml block must be a valid campaign, unless an HTML comment right before it says
`<!-- invalid: message fragment -->`: then it must be rejected with that message.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from promo_engine.campaigns.files import load_paths
from promo_engine.campaigns.risk_policy import (HoldSchema, PerDeviceDailySchema,
                                                PerUserDailySchema, PerUserMonthlySchema,
                                                RulesSchema)
from promo_engine.campaigns.schema import (BudgetSchema, CampaignSchema, ConditionsSchema,
                                           LimitsSchema, UserConditionsSchema, WindowSchema)
from promo_engine.core.registry import build_registry, get_plugin_manager

DOC = Path(__file__).resolve().parent.parent / "docs" / "campaigns.md"
TEXT = DOC.read_text()
BLOCK = re.compile(r"(?:<!--\s*invalid:\s*(?P<expected>[^\n]*?)\s*-->\s*\n)?"
                   r"```yaml\n(?P<body>.*?)```", re.S)
EXAMPLES = [(TEXT[:match.start("body")].count("\n") + 1, match["body"], match["expected"])
            for match in BLOCK.finditer(TEXT)]


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


def test_the_guide_has_valid_and_invalid_examples():
    assert sum(1 for _, _, expected in EXAMPLES if expected is None) >= 10
    assert sum(1 for _, _, expected in EXAMPLES if expected is not None) >= 10


@pytest.mark.parametrize("line, body, expected", EXAMPLES,
                         ids=[f"line{line}" for line, _, _ in EXAMPLES])
def test_yaml_example(registry, tmp_path, line, body, expected):
    path = tmp_path / "example.yaml"
    path.write_text(body)
    result = load_paths([path], registry=registry, currency="CNY",
                        default_timezone="Asia/Shanghai")
    messages = [str(problem) for problem in result.problems]
    if expected is None:
        assert messages == [], f"the example at docs/campaigns.md:{line} should be valid"
        assert result.campaigns or result.risk_policy is not None
    else:
        assert any(expected in problem.message for problem in result.problems), (
            f"the example at docs/campaigns.md:{line} should be rejected with {expected!r}, "
            f"got {messages}")


@pytest.mark.parametrize("schema, prefix", [
    (CampaignSchema, ""), (WindowSchema, "windows"), (ConditionsSchema, "conditions"),
    (BudgetSchema, "budget"), (LimitsSchema, "limits"),
    (UserConditionsSchema, "conditions.user")])
def test_every_field_is_documented(schema, prefix):
    assert_documented(schema, prefix)


@pytest.mark.parametrize("schema, prefix", [
    (RulesSchema, ""), (PerUserDailySchema, "per_user_daily"),
    (PerDeviceDailySchema, "per_device_daily"), (PerUserMonthlySchema, "per_user_monthly"),
    (HoldSchema, "hold")])
def test_every_risk_policy_key_is_documented(schema, prefix):
    section = TEXT.split("## The program's risk policy", 1)[1].split("\n## ", 1)[0]
    names = [field.data_key or name for name, field in schema._declared_fields.items()]
    assert [name for name in names if f"`{prefix}.{name}`" not in section
            and f"`{name}`" not in section] == []


def assert_documented(schema, prefix):
    names = [field.data_key or name for name, field in schema._declared_fields.items()]
    missing = [name for name in names
               if f"`{name}`" not in TEXT and f"`{prefix}.{name}`" not in TEXT]
    assert missing == []


def test_every_built_in_type_and_its_params_are_documented(registry):
    for name, campaign_type in registry.campaign_types.items():
        section = TEXT.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        params = campaign_type.params_schema._declared_fields
        assert [p for p in params if f"`{p}`" not in section] == [], name
