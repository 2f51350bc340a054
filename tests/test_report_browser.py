"""The report in a real browser: headless Chromium (Debian's package) driven by Playwright.

Opens the report from disk (file://), checks that the groups and failures are there, that the
thumbnails decode, that nothing but local files is requested, that the page works without
JavaScript, and saves a screenshot. Skipped, saying why, only when Chromium or the Playwright
package is not installed (`.ci/browser-setup` installs both).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from harvester.report import write_report
from tests.test_report_support import EVIL_URL, build_small_mirror

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    configured = os.environ.get("HARVESTER_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_factory(tmp_path_factory):
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (run .ci/browser-setup or apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python 'playwright' package is not installed (run .ci/browser-setup)")
    contexts = []
    with sync_playwright() as pw:

        def open_context(javascript: bool = True):
            context = pw.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")),
                executable_path=executable,
                args=CHROMIUM_FLAGS,
                headless=True,
                java_script_enabled=javascript,
                viewport={"width": 1280, "height": 900},
            )
            contexts.append(context)
            return context

        yield open_context
        for context in contexts:
            context.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    mirror = build_small_mirror(tmp_path_factory.mktemp("site"))
    return write_report(mirror.manifest, mirror.root / "report.html").out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_opens_from_disk_shows_groups_and_failures_and_fetches_nothing(
    browser_factory, report_file, tmp_path
):
    context = browser_factory()
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")

    assert page.locator("#duplicates .group").count() == 2
    assert page.locator("#duplicates figure.canonical").count() == 2
    assert page.locator("#similar .pair").count() == 1
    reasons = page.locator("#failures details.reason").evaluate_all(
        "els => els.map(e => e.dataset.reason)"
    )
    assert sorted(reasons) == ["corrupt-image", "dns-failure", "http-404", "not-an-image"]
    assert page.locator("#failures tr.failure").count() == 5
    assert page.locator("#failures tr.failure").first.is_visible()
    # the first group's thumbnails are in view: they must have decoded from the store on disk
    first_group_images = page.locator("#duplicates .group").first.locator("img")
    page.locator("#duplicates").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#duplicates .group:first-of-type img'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert first_group_images.count() == 3

    # the hostile URL is text, not markup: no alert, no extra script
    assert page.locator("script").count() == 1
    urls = page.locator("tr.failure").evaluate_all("els => els.map(e => e.dataset.url)")
    assert EVIL_URL in urls

    # progressive enhancement: the filter box narrows the failures to the matching row
    page.fill("#filter", "gone.example.com")
    visible = page.locator("#failures tr.failure:visible")
    assert visible.count() == 1
    assert "gone.example.com" in visible.first.inner_text()
    page.fill("#filter", "")
    assert page.locator("#failures tr.failure:visible").count() == 5

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height > 900
    keep = os.environ.get("HARVESTER_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report-browser-test.png")

    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert not problems, problems


def test_report_is_usable_without_javascript(browser_factory, report_file):
    page = browser_factory(javascript=False).new_page()
    page.goto(report_file.as_uri())
    assert page.locator("#filter").count() == 0  # no dead control without a script
    assert page.locator("#duplicates .group").count() == 2
    assert page.locator("#failures tr.failure:visible").count() == 5
    # articles are collapsed <details>; a click opens them without any script
    article = page.locator("details.article").first
    assert not article.locator("tr.ref").first.is_visible()
    article.locator("summary").click()
    assert article.locator("tr.ref").first.is_visible()
