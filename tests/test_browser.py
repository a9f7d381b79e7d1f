"""A real browser (Debian's Chromium through Playwright) opens the app, runs an example and sees
the bracketed spans, the candidate table and the Plotly charts. Saves docs/screenshot.png."""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # any pytest import mode
from test_app_e2e import start_app, stop_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    proc, url = start_app(tmp_path_factory.mktemp("app") / "app.log")
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1440, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(app_url)
        yield pg
        browser.close()


def test_run_an_example_and_inspect_it(page):
    expect = sync_api.expect
    # the example fills the prompt, reference and settings
    page.get_by_role("button", name="Free chat").click()
    page.wait_for_function("document.querySelector('#prompt textarea').value.includes('Singapore')")
    expect(page.locator("#prompt-format input[value=chat]")).to_be_checked()
    number = page.locator("#max-new-tokens input[type=number]")
    number.fill("10")
    number.press("Enter")
    page.locator("#run").click()

    # bracketed, coloured spans, with the round's candidates on hover
    spans = page.locator("#spans .af-span")
    expect(spans.first).to_be_visible(timeout=300_000)
    expect(page.locator("#status")).to_contain_text("Done.", timeout=300_000)
    text = page.locator("#spans .af-spans").inner_text()
    assert text.startswith("[") and text.count("]") >= 2 and "singapore" in text.lower()
    spans.first.hover()
    expect(page.locator("#spans .af-span .af-tip").first).to_be_visible()
    expect(page.locator("#spans .af-span .af-tip").first).to_contain_text("Round 0")

    # candidate table with the winner marked, and the words-per-round Plotly chart
    table = page.locator("#candidates")
    expect(table).to_be_visible()
    expect(table).to_contain_text("fused score")
    expect(table.get_by_text("✓").first).to_be_visible()
    expect(page.locator("#histogram .js-plotly-plot")).to_be_visible()
    page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)

    # the comparison runs after the run: methods side by side and the Plotly comparison chart
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-cards .af-card").nth(5)).to_be_visible(timeout=600_000)
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-cards")).to_contain_text("fixed L=3")
    page.screenshot(path=str(ROOT / "docs" / "screenshot-compare.png"), full_page=True)
