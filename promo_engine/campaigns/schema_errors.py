"""How a campaign document's problems are reported: `CampaignInvalid`, and marshmallow's
nested messages as (field path, message) pairs with paths written as in the YAML.

Apart from the schema because its readers are elsewhere too: campaigns/files.py maps the
paths back to YAML lines and the merchant portal shows each message next to its field;
neither needs the schema to do so.
"""
from __future__ import annotations

from typing import Mapping


class CampaignInvalid(ValueError):
    """A campaign document that does not validate; `messages` maps field paths to messages."""

    def __init__(self, messages: Mapping):
        self.messages = messages
        super().__init__("; ".join(f"{format_path(path)}: {message}" if path else message
                                   for path, message in flatten_messages(messages)))


def flatten_messages(messages, prefix: tuple = ()) -> list[tuple[tuple, str]]:
    """Marshmallow's nested messages as (field path, message) pairs; `_schema` names no field."""
    if isinstance(messages, Mapping):
        pairs = []
        for key, value in messages.items():
            pairs.extend(flatten_messages(value, prefix if key == "_schema" else prefix + (key,)))
        return pairs
    if isinstance(messages, (list, tuple)):
        pairs = []
        for item in messages:
            pairs.extend(flatten_messages(item, prefix))
        return pairs
    return [(prefix, str(messages))]


def format_path(field_path: tuple) -> str:
    """("windows", 0, "to") -> "windows[0].to"."""
    text = ""
    for key in field_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text
