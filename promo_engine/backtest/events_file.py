"""Events files: JSON Lines or CSV, read line by line, each line an event body as
POST /v1/events takes it (`event_lines.py` judges it), in `occurred_at` order.

A file is read twice, and never held in memory. The first pass (`index`) only notes which
events later lines name (refunds name payments, cancels name redemptions) and which ids may
occur on more than one line; the second (`events`) gives each line's event. So the
back-test keeps a payment's rewards only when a refund will come for it, and memory grows
with the users, not with the events.

CSV: a header row of the body's field names, and `attr.NAME` columns for attributes. Every
cell is text (attributes are strings), an empty cell is a field not given, `points` and
`redeem_points` are whole numbers, and `vouchers` lists codes separated by spaces.
"""
from __future__ import annotations

import codecs
import csv
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, NamedTuple

from promo_engine.api.request_fields import ATTRIBUTE_NAME
from promo_engine.backtest.event_lines import LineInvalid, LineReader, generated_event_id
from promo_engine.core.event import CANCEL, REFUND, Event

ATTRIBUTE_PREFIX = "attr."
WHOLE_NUMBER_COLUMNS = ("points", "redeem_points")
_DIGITS = re.compile(r"[0-9]+")
_EVENT_ID = re.compile(rb'"event_id"[ \t]*:[ \t]*"([A-Za-z0-9_.:-]{1,64})"')
Progress = Callable[[int], None]  # told the bytes read since it was last told


class FileProblem(Exception):
    """A line that cannot be simulated: `FILE:LINE: message`."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass
class FileIndex:
    """What the first pass learnt: enough to keep only what later lines need."""
    lines: int = 0
    referenced: set[str] = field(default_factory=set)  # original_event_id of refunds, cancels
    # Ids that may be on several lines (a Bloom filter's hits: a superset of the repeated
    # ones); only their lines are hashed and remembered, to replay or refuse a repeat.
    maybe_repeated: set[str] = field(default_factory=set)


class FileLine(NamedTuple):
    number: int
    event: Event | None  # None when the line is refused
    body: dict | None  # the body as the API would receive it (event_id filled in)
    problem: str | None


class EventsFile:
    def __init__(self, path: str, reader: LineReader):
        self.path = str(path)
        self.reader = reader
        self.is_csv = self.path.lower().endswith(".csv")
        self.size = os.path.getsize(self.path)

    # -- the first pass ----------------------------------------------------------------

    def index(self, progress: Progress | None = None) -> FileIndex:
        index = FileIndex()
        bits = _bloom_bits(self.size)
        mask = bits - 1
        seen = bytearray(bits >> 3)
        maybe = index.maybe_repeated
        referenced = index.referenced
        for number, event_id, original, size in self._ids():
            if progress is not None:
                progress(size)
            index.lines += 1
            if event_id is not None:
                bit = hash(event_id) & mask
                byte, flag = bit >> 3, 1 << (bit & 7)
                if seen[byte] & flag:
                    maybe.add(event_id)
                else:
                    seen[byte] |= flag
            if original is not None:
                referenced.add(original)
        return index

    def _ids(self) -> Iterator[tuple[int, str | None, str | None, int]]:
        """(line, its event_id, the id a refund or cancel names, bytes) for every non-blank
        line, loosely read: a line that is no event is refused in the second pass, and
        what is noted for it here only costs memory."""
        if self.is_csv:
            for number, body, size, _ in self._csv_bodies():
                yield (number, *_ids_of(body, number), size) if body is not None else \
                    (number, None, None, size)
            return
        loads, search = json.loads, _EVENT_ID.search
        with open(self.path, "rb") as lines:
            for number, raw in enumerate(_without_bom(lines), 1):
                if raw.isspace():
                    continue
                # Most lines: the id read off the text, no JSON parsed; only where the one
                # "event_id" is surely the body's own: before any attributes (whose keys
                # may be anything), and no escapes.
                if b'"original_event_id"' not in raw and b"\\" not in raw:
                    count = raw.count(b'"event_id"')
                    if count == 0:
                        yield number, generated_event_id(number), None, len(raw)
                        continue
                    found = search(raw) if count == 1 else None
                    if found is not None:
                        attributes = raw.find(b'"attributes"')
                        if attributes < 0 or found.start() < attributes:
                            yield number, found.group(1).decode(), None, len(raw)
                            continue
                try:
                    body = loads(raw)
                except (ValueError, RecursionError):
                    body = None
                if type(body) is dict:
                    yield (number, *_ids_of(body, number), len(raw))
                else:
                    yield number, None, None, len(raw)

    # -- the second pass ---------------------------------------------------------------

    def events(self, progress: Progress | None = None) -> Iterator[FileLine]:
        """Each non-blank line's event, or why it cannot be one: not a valid body, or out
        of `occurred_at` order (judged against the last line in order)."""
        latest: datetime | None = None
        latest_line, latest_text = 0, ""
        for number, event, body, problem, size in self._events():
            if progress is not None:
                progress(size)
            if event is not None:
                if latest is not None and event.occurred_at < latest:
                    yield FileLine(number, None, None, (
                        f"occurred_at {body['occurred_at']} is before line {latest_line}'s "
                        f"({latest_text}): events must be in occurred_at order"))
                    continue
                latest, latest_line, latest_text = event.occurred_at, number, body["occurred_at"]
            yield FileLine(number, event, body, problem)

    def _events(self):
        reader = self.reader
        if self.is_csv:
            for number, body, size, problem in self._csv_bodies():
                if problem is None:
                    try:
                        yield number, reader.body_event(body, number), body, None, size
                        continue
                    except LineInvalid as exc:
                        problem = exc.message
                yield number, None, None, problem, size
            return
        json_line = reader.json_line
        with open(self.path, "rb") as lines:
            for number, raw in enumerate(_without_bom(lines), 1):
                if raw.isspace():
                    continue
                try:
                    event, body = json_line(raw.rstrip(b"\r\n"), number)
                except LineInvalid as exc:
                    yield number, None, None, exc.message, len(raw)
                    continue
                yield number, event, body, None, len(raw)

    # -- CSV -------------------------------------------------------------------------------

    def _csv_bodies(self) -> Iterator[tuple[int, dict | None, int, str | None]]:
        """(first line of the row, its body, about its bytes, or why it is no body)."""
        with open(self.path, newline="", encoding="utf-8-sig",
                  errors="surrogateescape") as text:
            rows = csv.reader(text, strict=True)
            try:
                header = next(rows, None)
            except csv.Error as exc:
                raise FileProblem(self.path, 1, f"the header row is not CSV: {exc}") from None
            columns = self._columns(header)
            width = len(columns)
            last = rows.line_num
            while True:
                number = last + 1
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    last = rows.line_num
                    yield number, None, 1, f"not a CSV row: {exc}"
                    continue
                last = rows.line_num
                size = sum(len(cell) for cell in row) + len(row)
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    yield number, None, size, (f"the row has {len(row)} cells and the header "
                                               f"{width}")
                    continue
                try:
                    "".join(row).encode("utf-8")
                except UnicodeEncodeError:
                    yield number, None, size, "the line is not valid UTF-8"
                    continue
                yield number, _csv_body(columns, row), size, None

    def _columns(self, header: list[str] | None) -> list[tuple[str, bool]]:
        """(name, is an attribute) per column; a FileProblem on line 1 for a bad header."""
        if not header or not any(cell.strip() for cell in header):
            raise FileProblem(self.path, 1, "no header row: the first line names the "
                                            "columns (the event's fields, attr.NAME)")
        known = set(self.reader.schema.fields)
        columns, seen = [], set()
        for cell in header:
            name = cell.strip()
            if name in seen:
                raise FileProblem(self.path, 1, f"column {name!r} is given twice")
            seen.add(name)
            if name.startswith(ATTRIBUTE_PREFIX):
                attribute = name[len(ATTRIBUTE_PREFIX):]
                if not ATTRIBUTE_NAME.fullmatch(attribute):
                    raise FileProblem(self.path, 1, f"column {name!r}: attribute names are "
                                                    "1-64 characters of A-Z a-z 0-9 _ . : -")
                columns.append((attribute, True))
            elif name in known:
                columns.append((name, False))
            else:
                raise FileProblem(self.path, 1, f"unknown column {name!r}: columns are the "
                                                "event's fields and attr.NAME for attributes")
        return columns


def _csv_body(columns: list[tuple[str, bool]], row: list[str]) -> dict:
    body: dict = {}
    for (name, is_attribute), cell in zip(columns, row):
        if cell == "":
            continue
        if is_attribute:
            body.setdefault("attributes", {})[name] = cell
        elif name in WHOLE_NUMBER_COLUMNS and _DIGITS.fullmatch(cell):
            body[name] = int(cell)
        elif name == "vouchers":
            body[name] = cell.split()
        else:
            body[name] = cell
    return body


def _without_bom(lines):
    """The file's lines, without the byte order mark some editors put at its start."""
    for number, raw in enumerate(lines):
        yield raw[3:] if number == 0 and raw.startswith(codecs.BOM_UTF8) else raw


def _ids_of(body: dict, number: int) -> tuple[str | None, str | None]:
    """The body's event_id (line-N without one) and the id it names, if a refund or cancel."""
    event_id = body.get("event_id") if "event_id" in body else generated_event_id(number)
    original = body.get("original_event_id")
    if body.get("type") not in (REFUND, CANCEL):
        original = None
    return (event_id if type(event_id) is str else None,
            original if type(original) is str else None)


def _bloom_bits(size: int) -> int:
    """A power of two, a bit for every four bytes of the file or more (some 40 a line of
    a wallet's events): about 2% false hits, and 8 MB for a million lines."""
    bits = 1 << 16
    while bits < size // 4 and bits < 1 << 34:
        bits <<= 1
    return bits
