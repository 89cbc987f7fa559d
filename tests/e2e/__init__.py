"""End-to-end browser tests of the merchant portal (headless Chromium driven by Playwright).

Run them alone with `.venv/bin/pytest tests/e2e` (or `-m e2e`; `-m "not e2e"` leaves them
out). They need Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium
fonts-noto-cjk`, which .ci/run does) and never Playwright's own browser download. Screenshots
of the main pages go to tests/screenshots/ (git-ignored): NAME-{en,zh}-{desktop,phone}.png.

A package, so that its conftest is `e2e.conftest` and does not take the place of
tests/conftest.py as the module `conftest` (other test modules import from that one).
"""
