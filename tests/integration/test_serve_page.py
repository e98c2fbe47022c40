"""The page at / in headless Chromium (Debian's ``chromium`` driven by Playwright): type a text, see the
labels with probabilities; NER entities highlighted; an image upload; the run's metrics and confusion
matrix. Each test saves a screenshot under its tmp dir."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest
from serve_helpers import ServerProcess, free_port

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian chromium is not installed (make install runs: apt-get install chromium)",
)
FAKE_SERVER = Path(__file__).with_name("fake_server.py")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def fake_server(tmp_path: Path):
    servers = []

    def start(task: str) -> ServerProcess:
        port = free_port()
        server = ServerProcess(
            [sys.executable, str(FAKE_SERVER), task, str(port), str(tmp_path)], port, tmp_path / f"{task}.log"
        )
        server.wait_ready()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_type_a_text_and_see_probabilities(browser, live_server: ServerProcess, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{live_server.url}/")
    # the server needs an API key: the page asks for one
    page.wait_for_selector("#auth:not([hidden])", timeout=30_000)
    page.fill("#key", live_server.key)
    page.click("#save-key")
    page.wait_for_selector("#metrics-table", timeout=30_000)
    assert "accuracy" in page.inner_text("#metrics-table")
    assert page.locator("#confusion-table tr").count() == 3  # header + one row per label
    assert "text-classification" in page.inner_text("#task")

    text = "a superb and wonderful film"
    page.fill("#text", text)
    page.click("#predict")
    page.wait_for_selector("#result .row", timeout=30_000)
    rows = page.locator("#result .row")
    assert rows.count() == 2
    shown = {
        rows.nth(i).get_attribute("data-label"): float(rows.nth(i).locator(".pct").inner_text().rstrip("%"))
        for i in range(2)
    }
    assert set(shown) == {"neg", "pos"} and sum(shown.values()) == pytest.approx(100, abs=0.2)
    with live_server.client() as c:
        api = c.post("/v1/predict", json={"inputs": [text]}).json()["predictions"][0]["scores"]
    for label, pct in shown.items():
        assert pct == pytest.approx(100 * api[label], abs=0.06)  # the page shows what the API answers
    page.screenshot(path=str(tmp_path / "page-text-classification.png"), full_page=True)
    assert (tmp_path / "page-text-classification.png").stat().st_size > 10_000
    page.close()


def test_page_shows_a_clear_error(browser, live_server: ServerProcess) -> None:
    page = browser.new_page()
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#auth:not([hidden])", timeout=30_000)
    page.fill("#key", live_server.key)
    page.click("#save-key")
    page.wait_for_selector("#metrics-table", timeout=30_000)
    page.fill("#text", "x" * 2001)  # over the live server's --max-text-chars 2000
    page.click("#predict")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "--max-text-chars" in page.inner_text("#error")
    page.close()


def test_entities_are_highlighted(browser, fake_server, tmp_path: Path) -> None:
    server = fake_server("token-classification")
    page = browser.new_page()
    page.goto(f"{server.url}/")
    page.wait_for_selector("#metrics-table", timeout=30_000)
    page.fill("#text", "yesterday Ada met Alan in town")
    page.click("#predict")
    page.wait_for_selector("#result mark", timeout=30_000)
    marks = page.locator("#result mark")
    assert [marks.nth(i).inner_text().replace("PER", "").strip() for i in range(marks.count())] == [
        "Ada",
        "Alan",
    ]
    assert "yesterday" in page.inner_text("#result") and "in town" in page.inner_text("#result")
    page.screenshot(path=str(tmp_path / "page-ner.png"), full_page=True)
    page.close()


def test_drop_an_image(browser, fake_server, tmp_path: Path) -> None:
    from PIL import Image

    server = fake_server("image-classification")
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    page = browser.new_page()
    page.goto(f"{server.url}/")
    page.wait_for_selector("#drop", state="visible", timeout=30_000)
    assert page.is_hidden("#text-input")
    page.set_input_files(
        "#file", files=[{"name": "red.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    page.click("#predict")
    page.wait_for_selector("#result .row", timeout=30_000)
    top = page.locator("#result .row.top")
    assert top.get_attribute("data-label") == "dog" and top.locator(".pct").inner_text() == "80.0%"
    page.screenshot(path=str(tmp_path / "page-image.png"), full_page=True)
    page.close()
