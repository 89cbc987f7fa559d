"""Campaign YAML files and folders in, validated campaigns and `file:line: message` problems out.

Files are read with YAML 1.2 rules (`on:` is a string key, `from: 10:00` the string
"10:00"), one campaign per document, several documents per file with `---`. Every problem
in every file is collected, so one run shows them all; nothing here raises for any input.

A document whose top-level key is `risk_policy` is the program's risk policy
(`risk_policy.py`), not a campaign: at most one in all the files read together.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from promo_engine.campaigns.risk_policy import (KEY as POLICY_KEY, LoadedRiskPolicy,
                                                is_policy_document, read_policy)
from promo_engine.campaigns.schema import ID_PATTERN, load_campaign
from promo_engine.campaigns.schema_errors import CampaignInvalid, flatten_messages, format_path
from promo_engine.campaigns.spec import canonical_spec, spec_hash
from promo_engine.core.campaign import Campaign

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1024 * 1024
# ruamel's scanner is quadratic in the depth of [ { nesting (seconds for a few thousand);
# no campaign comes near this, so deeper text is refused before it is parsed.
MAX_FLOW_DEPTH = 50
OTHER_YAML_VERSION = re.compile(r"^%YAML[ \t]+(?!1\.2[ \t]*(?:#.*)?$)", re.MULTILINE)
DUPLICATE_KEY = re.compile(r'found duplicate key "(.*)" with value')


@dataclass(frozen=True)
class Problem:
    path: str
    line: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class LoadedCampaign:
    campaign: Campaign
    spec: dict  # canonical, JSON-ready: what is stored
    path: str
    line: int  # where the document starts

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


@dataclass
class LoadResult:
    campaigns: list[LoadedCampaign] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every campaign file read
    risk_policy: LoadedRiskPolicy | None = None  # the risk policy document, when given

    @property
    def ok(self) -> bool:
        return not self.problems


def load_paths(paths: Iterable[str | os.PathLike], *, registry, currency: str,
               default_timezone: str) -> LoadResult:
    """Read every file and folder (every *.yaml/*.yml below it, sorted, hidden ones skipped)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    result = LoadResult()
    files = _campaign_files(paths, result.problems)
    first_seen: dict[str, tuple[str, int]] = {}
    policy_seen: list[tuple[str, int]] = []
    for path in files:
        result.files.append(path)
        problems: list[Problem] = []
        for document, line in _documents(path, problems):
            if is_policy_document(document):
                _load_policy(document, line, path, problems, result, policy_seen,
                             currency=currency)
                continue
            _load_document(document, line, path, problems, result.campaigns, first_seen,
                           registry=registry, currency=currency,
                           default_timezone=default_timezone)
        result.problems.extend(sorted(problems, key=lambda p: p.line))
    return result


# --- finding and reading files --------------------------------------------------------------

def _campaign_files(paths, problems: list[Problem]) -> list[str]:
    files: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(path)

    for given in paths:
        path = os.fspath(given)
        if os.path.isdir(path):
            found = _files_below(path, problems)
            if not found:
                problems.append(Problem(path, 1, "no campaign files (*.yaml, *.yml) in this "
                                                 "folder"))
            for item in found:
                add(item)
        elif os.path.exists(path):
            add(path)
        else:
            problems.append(Problem(path, 1, "no such file or folder"))
    return files


def _files_below(folder: str, problems: list[Problem]) -> list[str]:
    def unreadable(error: OSError) -> None:
        problems.append(Problem(error.filename or folder, 1,
                                f"cannot read this folder: {error.strerror or error}"))

    found = []
    for directory, subdirectories, names in os.walk(folder, onerror=unreadable):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in names:
            if name.endswith(SUFFIXES) and not name.startswith("."):
                found.append(os.path.join(directory, name))
    return sorted(found, key=lambda p: Path(p).parts)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def _documents(path: str, problems: list[Problem]) -> list[tuple[Any, int]]:
    """The non-empty documents of a file with their first line; problems for the rest."""
    def problem(line: int, message: str) -> list:
        problems.append(Problem(path, line, message))
        return []

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return problem(1, "not a regular file")  # a pipe or device could block forever
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return problem(1, f"cannot read this file: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return problem(1, f"larger than {MAX_FILE_BYTES // 1024} KiB: not a campaign file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return problem(data[:exc.start].count(b"\n") + 1,
                       f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be read)")
    directive = OTHER_YAML_VERSION.search(text)
    if directive:
        return problem(text[:directive.start()].count("\n") + 1,
                       "only YAML 1.2 is supported: remove this %YAML directive")

    too_deep = _flow_too_deep(text)
    if too_deep:
        return problem(too_deep, f"invalid YAML: [ and {{ nested more than {MAX_FLOW_DEPTH} "
                                 "deep")
    try:
        nodes = list(_yaml().compose_all(text))
    except Exception as exc:  # whatever the text, a problem and never a traceback
        return problem(*_yaml_error(exc, text))

    documents = []
    for node in nodes:
        line = node.start_mark.line + 1
        try:
            # A fresh constructor per document: a failed one leaves no state behind.
            document = _yaml().constructor.construct_document(node)
        except Exception as exc:
            failed_line, message = _yaml_error(exc, text)
            problem(failed_line if isinstance(exc, MarkedYAMLError) else line, message)
            continue
        if document is not None:
            documents.append((document, line))
    if not documents and not problems:
        problem(1, "no campaign in this file (it is empty or only comments)")
    return documents


def _flow_too_deep(text: str) -> int:
    """The line where [ { nesting first goes past the limit (0 if never). Brackets inside
    quotes count too: harmless, as a real campaign stays far below the limit."""
    depth = 0
    line = 1
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                return line
        elif char in "]}":
            depth = max(depth - 1, 0)
        elif char == "\n":
            line += 1
    return 0


def _yaml_error(exc: Exception, text: str) -> tuple[int, str]:
    if isinstance(exc, DuplicateKeyError):
        match = DUPLICATE_KEY.search(str(exc.problem))
        key = match.group(1) if match else "?"
        return (_mark_line(exc.problem_mark),
                f'duplicate key "{key}": each key may appear only once in a mapping')
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context or 'cannot be read'}"
        if exc.context and exc.context_mark and exc.problem:
            message += f" ({exc.context} at line {_mark_line(exc.context_mark)})"
        return _mark_line(mark), message
    if isinstance(exc, ReaderError):
        line = text[:max(exc.position, 0)].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
        return line, f"invalid YAML: character U+{code:04X} is not allowed"
    if isinstance(exc, RecursionError):
        return 1, "invalid YAML: nested too deeply"
    if isinstance(exc, YAMLError):
        return 1, f"invalid YAML: {exc}"
    return 1, f"cannot read this YAML: {exc}"


def _mark_line(mark) -> int:
    return mark.line + 1 if mark is not None else 1


# --- one document ---------------------------------------------------------------------------

def _load_document(document, line: int, path: str, problems: list[Problem],
                   loaded: list[LoadedCampaign], first_seen: dict[str, tuple[str, int]], *,
                   registry, currency: str, default_timezone: str) -> None:
    if not isinstance(document, Mapping):
        problems.append(Problem(path, line, "a campaign must be a mapping of fields "
                                            f"(key: value lines), not {_kind(document)}"))
        return

    duplicate = False
    campaign_id = document.get("id")
    if isinstance(campaign_id, str) and ID_PATTERN.fullmatch(campaign_id):
        id_line = locate(document, line, ("id",))
        if campaign_id in first_seen:
            first_path, first_line = first_seen[campaign_id]
            problems.append(Problem(path, id_line, f'duplicate campaign id "{campaign_id}": '
                                                   f"first defined at {first_path}:{first_line}"))
            duplicate = True
        else:
            first_seen[campaign_id] = (path, id_line)

    options = dict(registry=registry, currency=currency, default_timezone=default_timezone)
    try:
        campaign = load_campaign(document, **options)
        spec = canonical_spec(document, default_timezone)
        spec_hash(spec)
        if load_campaign(spec, **options) != campaign:
            raise ValueError("it reads differently once stored")
    except CampaignInvalid as exc:
        for field_path, message in flatten_messages(exc.messages):
            problems.append(Problem(path, locate(document, line, field_path),
                                    f"{format_path(field_path)}: {message}" if field_path
                                    else message))
        return
    except Exception as exc:  # values JSON cannot hold, a plugin whose params do not round-trip
        problems.append(Problem(path, line, f"this campaign cannot be stored: {exc}"))
        return
    if not duplicate:
        loaded.append(LoadedCampaign(campaign=campaign, spec=spec, path=path, line=line))


def _load_policy(document, line: int, path: str, problems: list[Problem], result: LoadResult,
                 policy_seen: list[tuple[str, int]], *, currency: str) -> None:
    """The risk policy document; a second one anywhere is an error at its key, even when
    the first did not validate: which of two policies was meant cannot be guessed."""
    key_line = locate(document, line, (POLICY_KEY,))
    if policy_seen:
        first_path, first_line = policy_seen[0]
        problems.append(Problem(path, key_line, "a second risk_policy document: the program "
                                                "has one risk policy, first defined at "
                                                f"{first_path}:{first_line}"))
        return
    policy_seen.append((path, key_line))
    try:
        result.risk_policy = read_policy(document, currency=currency, path=path, line=line)
    except CampaignInvalid as exc:
        for field_path, message in flatten_messages(exc.messages):
            problems.append(Problem(path, locate(document, line, field_path),
                                    f"{format_path(field_path)}: {message}" if field_path
                                    else message))
    except Exception as exc:  # values JSON cannot hold
        problems.append(Problem(path, line, f"this risk policy cannot be stored: {exc}"))


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def locate(document, line: int, field_path: tuple) -> int:
    """The line of the deepest key or item of `field_path` present in the document: a bad
    value is reported at its key, a missing key at the mapping that lacks it."""
    node = document
    for key in field_path:
        try:
            if isinstance(node, Mapping) and key in node:
                position = _key_position(node, key)
            elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                position = node.lc.item(key) if hasattr(node, "lc") else None
            else:
                break
            node = node[key]
        except Exception:  # a position is a nicety: never fail for want of one
            break
        if position is not None:
            line = position[0] + 1
    return line


def _key_position(mapping, key):
    """A key's (line, column); for a key merged in with `<<: *anchor`, where the anchored
    mapping holds it."""
    try:
        return mapping.lc.key(key)
    except (AttributeError, KeyError):
        pass
    for source in getattr(mapping, "merge", ()):
        source = source[1] if isinstance(source, tuple) else source  # (index, map) before 0.18
        if isinstance(source, Mapping) and key in source:
            return _key_position(source, key)
    return None
