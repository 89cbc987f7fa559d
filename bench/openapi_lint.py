"""Lint /v1/openapi.json with the npm linters: Redocly CLI (recommended rules) and Spectral
(spectral:oas), and print each one's error and warning counts.

    cd bench/openapi_lint && npm ci && cd ../.. && .venv/bin/python bench/openapi_lint.py

The document is the one the app serves (GET /v1/openapi.json through Flask's test client:
no server, no database needed). `--document FILE` lints a saved document instead, `--keep
DIR` keeps the dumped document and the linters' full reports. Exits 1 when Redocly finds
an error (the target is 0 errors), 0 otherwise.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent / "openapi_lint"
sys.path.insert(0, str(HERE.parent.parent))


def served_document() -> dict:
    """GET /v1/openapi.json of an app on a throwaway SQLite file (it is never opened)."""
    from promo_engine.app import create_app
    from promo_engine.config import Settings
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(database_url=f"sqlite:///{directory}/lint.db", redis_url=None,
                            secret_key="openapi-lint-" + "0" * 20, timezone="Asia/Shanghai",
                            currency="CNY", points_per_unit=Decimal(1))
        app = create_app(settings, test_config={"TESTING": True})
        response = app.test_client().get("/v1/openapi.json")
        assert response.status_code == 200, response.status_code
        return response.get_json()


def _npx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["npx", "--no-install", *args], cwd=HERE, capture_output=True,
                          text=True, check=False)


def redocly(document: Path, keep: Path | None) -> collections.Counter:
    """Redocly CLI `lint --extends recommended`: problems by severity and rule."""
    done = _npx("redocly", "lint", "--extends", "recommended", "--format", "json",
                str(document))
    start = done.stdout.find("{")
    if start < 0:
        raise SystemExit(f"redocly gave no report:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout[start:])
    if keep:
        (keep / "redocly.json").write_text(json.dumps(report, indent=2))
    counts = collections.Counter()
    for problem in report["problems"]:
        counts[problem["severity"], problem["ruleId"]] += 1
    return counts


SPECTRAL_SEVERITIES = {0: "error", 1: "warn", 2: "info", 3: "hint"}


def spectral(document: Path, keep: Path | None) -> collections.Counter:
    """Spectral `lint` with .spectral.yaml (spectral:oas): problems by severity and rule."""
    done = _npx("spectral", "lint", "--ruleset", ".spectral.yaml", "--format", "json",
                "--quiet", str(document))
    start = done.stdout.find("[")
    if start < 0:
        raise SystemExit(f"spectral gave no report:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout[start:])
    if keep:
        (keep / "spectral.json").write_text(json.dumps(report, indent=2))
    counts = collections.Counter()
    for problem in report:
        counts[SPECTRAL_SEVERITIES[problem["severity"]], problem["code"]] += 1
    return counts


def show(name: str, counts: collections.Counter) -> dict[str, int]:
    totals = collections.Counter()
    for (severity, _), n in counts.items():
        totals[severity] += n
    errors = totals["error"]
    warnings = totals["warning"] + totals["warn"]
    print(f"{name}: {errors} errors, {warnings} warnings")
    for (severity, rule), n in sorted(counts.items()):
        print(f"  {severity:8} {rule}: {n}")
    return {"errors": errors, "warnings": warnings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--document", type=Path, help="lint this file, not the served one")
    parser.add_argument("--keep", type=Path, help="write the document and reports here")
    args = parser.parse_args()
    if not (HERE / "node_modules").is_dir():
        raise SystemExit(f"run `npm ci` in {HERE} first")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        document = args.document
        if document is None:
            document = out / "openapi.json"
            document.write_text(json.dumps(served_document(), indent=2))
        document = document.resolve()
        redocly_totals = show("Redocly (recommended)", redocly(document, args.keep))
        show("Spectral (spectral:oas)", spectral(document, args.keep))
    return 1 if redocly_totals["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
