"""URL converters for the ids in the portal's paths.

A path only matches when its id could be stored: anything else is 404 before a view runs,
never a value the database refuses (PostgreSQL's bigint ends at 2^63 - 1, and its text
cannot hold NUL).
"""
from __future__ import annotations

from werkzeug.routing import BaseConverter, ValidationError

from promo_engine.campaigns.schema import ID_PATTERN

BIGINT_MAX = 2**63 - 1


class RowIdConverter(BaseConverter):
    """`<row_id:name>`: a table's id, 1 to 2^63 - 1, in ASCII digits."""

    regex = r"[0-9]{1,19}"
    weight = 50

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= BIGINT_MAX:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


class CampaignIdConverter(BaseConverter):
    """`<campaign_id:name>`: an id as the campaign schema allows it."""

    regex = ID_PATTERN.pattern


CONVERTERS = {"row_id": RowIdConverter, "campaign_id": CampaignIdConverter}
