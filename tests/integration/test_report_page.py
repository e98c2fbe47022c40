"""report.html of a compare in headless Chromium (Debian's ``chromium`` driven by Playwright): every request
it makes stays on the machine (file:// or data:), the plots render, and a screenshot is saved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compare_synthetic import write_compare
from transferkit.comparison.report import build_report

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian chromium is not installed (make install runs: apt-get install chromium)",
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, path: Path):
    """Opens ``path`` with every request routed: local ones (file:, data:) go through, others are aborted.
    Returns the page and the list of requested URLs."""
    requested: list[str] = []

    def route(r) -> None:
        requested.append(r.request.url)
        if r.request.url.startswith(("file://", "data:")):
            r.continue_()
        else:
            r.abort()

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requested


def test_report_page_is_offline_and_renders(browser, tmp_path: Path) -> None:
    folder = write_compare(tmp_path / "compare")
    summary = build_report(folder, n_boot=200)
    page, requested = _open(browser, Path(summary["html"]))
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth])")
    assert {i[0] for i in images} == {"plot-curves", "plot-time", "plot-gains", "plot-confusion"}
    assert all(complete and width > 0 for _, complete, width in images), images
    assert "lp-ft" in page.inner_text("#verdict")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert requested and requested[0].startswith("file://")
    assert all(u.startswith(("file://", "data:")) for u in requested), requested
    assert shot.stat().st_size > 10_000


def test_the_route_guard_sees_external_requests(browser, tmp_path: Path) -> None:
    """The check above would catch a page that fetches from the network."""
    page_file = tmp_path / "leaky.html"
    page_file.write_text(
        "<img src='https://example.invalid/x.png'><link rel=stylesheet href='http://cdn.invalid/a.css'>"
    )
    page, requested = _open(browser, page_file)
    page.close()
    assert {"https://example.invalid/x.png", "http://cdn.invalid/a.css"} <= set(requested)
