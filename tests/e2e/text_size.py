"""The size text is drawn at, as the browser renders it, for the pages' screenshot tests.

Every visible text on the page counts: text nodes (their element's computed font size; in an
SVG, times the scale the SVG is drawn at, so a chart shrunk onto a phone counts as small),
::before/::after content (the phone tables' field labels) and form fields' values and
placeholders. Hidden text (display: none, visibility: hidden, a closed <details>, SVG
<title> tooltips) does not count.
"""
from __future__ import annotations

MIN_TEXT_PX = 11

SMALLEST_TEXT_JS = """(chartsOnly) => {
  const found = [];
  const shown = el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  const name = el => {
    const classes = typeof el.className === "string" ? el.className.trim() : "";
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (classes ? "." + classes.split(/\\s+/).join(".") : "");
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || el.closest("title, desc, script, style, noscript, template, option")) {
      continue;
    }
    if (!shown(el)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    if (![...range.getClientRects()].some(r => r.width > 0 && r.height > 0)) continue;
    let px = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) {
      const m = el.getScreenCTM();
      px *= Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
    }
    found.push({px, text: text.slice(0, 40), where: name(el), chart: el instanceof SVGElement});
  }
  if (chartsOnly) return found.filter(f => f.chart).sort((a, b) => a.px - b.px).slice(0, 5);
  for (const el of document.querySelectorAll("body *")) {
    if (!shown(el)) continue;
    for (const pseudo of ["::before", "::after"]) {
      const style = getComputedStyle(el, pseudo);
      const content = style.content;
      if (!content || ["none", "normal", '""', "''"].includes(content) ||
          style.display === "none") continue;
      found.push({px: parseFloat(style.fontSize), text: content.slice(0, 40),
                  where: name(el) + pseudo});
    }
  }
  const fields = "input:not([type=hidden]):not([type=checkbox]):not([type=radio]), " +
    "select, textarea";
  for (const el of document.querySelectorAll(fields)) {
    const text = (el.value || el.placeholder || "").trim();
    if (!text || !shown(el)) continue;
    found.push({px: parseFloat(getComputedStyle(el).fontSize), text: text.slice(0, 40),
                where: name(el)});
  }
  found.sort((a, b) => a.px - b.px);
  return found.slice(0, 5);
}"""

# Wider than the window: the page scrolls sideways.
PAGE_WIDTH_JS = "() => [document.documentElement.scrollWidth, window.innerWidth]"


def smallest_text(page, *, charts_only: bool = False) -> list[dict]:
    """The five smallest texts on the page (or in its charts), smallest first:
    {px, text, where}."""
    return page.evaluate(SMALLEST_TEXT_JS, charts_only)


def too_small(page, where: str) -> list[str]:
    """A problem for each text drawn under MIN_TEXT_PX."""
    return [f"{where}: {found['px']:.1f}px text {found['text']!r} in {found['where']}"
            for found in smallest_text(page) if found["px"] < MIN_TEXT_PX - 0.01]


def scrolls_sideways(page, where: str) -> list[str]:
    width, window = page.evaluate(PAGE_WIDTH_JS)
    return [f"{where}: the page is {width}px wide in a {window}px window (scrolls sideways)"
            ] if width > window else []
