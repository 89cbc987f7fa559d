"""Meta-tests that keep docs/plugins.md honest (as Datasette's test_docs.py does).

Every hook is documented and tested, and the complete example the docs show is the code
of tests/plugin_package, byte for byte, which test_plugin_entry_points.py installs and runs.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from promo_engine.core import hookspecs

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"
PACKAGE_DIR = TESTS / "plugin_package"

HOOK_HEADING = re.compile(r"^#{2,4} `?(promo_\w+)\(", re.MULTILINE)
TITLED_BLOCK = re.compile(r'^```[\w-]* title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
HOOK_TEST = re.compile(r"^def (test_hook_\w+)\(", re.MULTILINE)


def hook_names() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, value in vars(hookspecs).items()
                  if callable(value) and hasattr(value, marker))


def package_files() -> list[str]:
    return sorted(str(path.relative_to(PACKAGE_DIR)) for path in PACKAGE_DIR.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts
                  and not any(part == "build" or part.endswith(".egg-info")
                              for part in path.relative_to(PACKAGE_DIR).parts))


def titled_blocks() -> list[tuple[str, str]]:
    return TITLED_BLOCK.findall(DOCS.read_text(encoding="utf-8"))


def test_there_are_hooks_to_check():
    assert hook_names() == ["promo_campaign_closed", "promo_campaign_opened",
                            "promo_campaign_types", "promo_event_types"]


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented_under_a_heading_of_its_name(hook):
    assert hook in HOOK_HEADING.findall(DOCS.read_text(encoding="utf-8"))


def test_docs_document_no_hook_that_does_not_exist():
    assert sorted(set(HOOK_HEADING.findall(DOCS.read_text(encoding="utf-8")))) == hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_test(hook):
    defined = {name for path in TESTS.rglob("test_*.py")
               for name in HOOK_TEST.findall(path.read_text(encoding="utf-8"))}
    assert f"test_hook_{hook}" in defined


def test_docs_show_every_file_of_the_example_package():
    assert sorted(title for title, _ in titled_blocks()) == package_files()


@pytest.mark.parametrize("title, shown", titled_blocks(), ids=[t for t, _ in titled_blocks()])
def test_documented_example_file_is_the_tested_file(title, shown):
    assert (PACKAGE_DIR / title).read_bytes() == shown.encode("utf-8")
