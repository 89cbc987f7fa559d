"""The folders show the architecture and stay true to it: import-linter's contracts in
setup.cfg hold (and would catch a lower layer importing a higher one), few modules stand
directly in promo_engine/, and none grows past what one idea needs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 500


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tree), "PATH": ""})


def test_every_import_linter_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_build(tmp_path):
    for name in ("promo_engine", "merchant_portal"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    money = tmp_path / "promo_engine" / "core" / "money.py"
    money.write_text(money.read_text() + "\nfrom promo_engine.ledger import models  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "promo_engine.core is not allowed to import promo_engine.ledger" in result.stdout
    assert "promo_engine.core is not allowed to import sqlalchemy" in result.stdout


def test_few_modules_stand_directly_in_the_package():
    modules = sorted(p.name for p in (ROOT / "promo_engine").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_every_package_says_what_lives_there():
    for init in sorted((ROOT / "promo_engine").rglob("__init__.py")):
        text = init.read_text().lstrip()
        assert text.startswith('"""') and len(text.split('"""')[1].split()) >= 8, init


def test_no_module_outgrows_one_idea():
    too_long = {}
    for folder in ("promo_engine", "merchant_portal", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}
