"""Accessibility checks with axe-core, run inside the page under test by Playwright.

axe-core is vendored (tests/vendor/axe-core, its version and origin in the README
there), so the check needs no network and no npm. `assert_accessible(page)` injects it
into the page as a script tag, runs it on the WCAG 2.0 and 2.1 A and AA rules, and fails
listing every serious or critical violation: the rule, its impact, what it asks for, and
the elements that break it.

The pages under test forbid inline scripts by their Content-Security-Policy (no
`script-src`, so `default-src 'none'` applies), which would block the injected tag: open
the page in a browser context made with `browser.new_context(bypass_csp=True)` (see
`new_context` below). That switches the CSP off in that context only; the CSP itself is
tested elsewhere (tests/test_browser.py), and it decides nothing axe looks at (the pages'
styles come from the site itself, which the CSP allows).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
# The WCAG 2.0 and 2.1 success criteria, levels A and AA, as axe-core tags its rules.
TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
BLOCKING = frozenset({"serious", "critical"})


@cache
def axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


def new_context(browser: Any, **options: Any) -> Any:
    """A browser context where axe can be injected: the pages' CSP is bypassed in it."""
    return browser.new_context(bypass_csp=True, **options)


def run_axe(page: Any, *, context: Any = None) -> dict[str, Any]:
    """axe-core's results for the page (or the part `context` names: a selector, or an
    axe context object such as {"exclude": [...]})."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        try:
            page.add_script_tag(content=axe_source())
        except Exception as exc:  # Playwright's Error; the CSP refused the inline script
            raise AssertionError(
                "axe-core could not be injected; open the page in a context made by "
                f"tests.a11y.new_context (bypass_csp=True): {exc}"
            ) from exc
    options = {"runOnly": {"type": "tag", "values": list(TAGS)}, "resultTypes": ["violations"]}
    return page.evaluate(
        "([context, options]) => axe.run(context ?? document, options)", [context, options]
    )


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']} "
            f"[{violation['helpUrl']}]"
        )
        for node in violation["nodes"]:
            lines.append(f"    at {json.dumps(node['target'])}: {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"       {summary[:300]}")
    return "\n".join(lines)


def assert_accessible(
    page: Any, *, context: Any = None, allowed: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Fail, listing them, when axe finds serious or critical WCAG 2.1 A/AA violations
    (but those of the rules `allowed` names: known failures, each with its reason where
    it is allowed); answer axe's whole results (minor and moderate ones are in them)."""
    results = run_axe(page, context=context)
    # axe ran its rules on something: a run where no rule applied proves nothing.
    assert results["passes"], f"axe checked nothing on {page.url}"
    blocking = [
        v for v in results["violations"] if v["impact"] in BLOCKING and v["id"] not in allowed
    ]
    assert not blocking, (
        f"{len(blocking)} serious or critical accessibility violation(s) on {page.url}:\n"
        + describe(blocking)
    )
    return results
