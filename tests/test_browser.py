"""A real browser (Debian's Chromium through Playwright) opens the app, runs an example and sees
the bracketed spans, the candidate table and the Plotly charts; then the Cases view: the gallery,
a run the harness made opened, filtered, an item selected and re-run. Saves the docs screenshots."""
import re
import shutil
from pathlib import Path

import pytest

from test_app_e2e import start_app, stop_app  # noqa: E402

from adafuse.cases import Query, load_trace, open_cases, select  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Screenshots land in an ignored folder (a test run leaves the tracked tree as it was); the docs'
# copies are refreshed by hand: cp tests/artifacts/screenshot*.png docs/
SHOTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, run_dir):
    proc, url = start_app(tmp_path_factory.mktemp("app") / "app.log",
                          ADAFUSE_RUNS_ROOT=str(run_dir.parent))
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(app_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
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
    page.screenshot(path=str(SHOTS / "screenshot.png"), full_page=True)

    # the comparison runs after the run: methods side by side and the Plotly comparison chart
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-cards .af-card").nth(5)).to_be_visible(timeout=600_000)
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-cards")).to_contain_text("fixed L=3")
    page.screenshot(path=str(SHOTS / "screenshot-compare.png"), full_page=True)


def test_cases_view_open_a_run_filter_select_and_rerun(page, run_dir):
    """A first-time visitor sees the gallery; then a run the harness made is opened, filtered, an
    item selected and its trace shown; its what-if re-run streams in the Studio."""
    expect = sync_api.expect
    expect.set_options(timeout=60_000)          # a machine busy with the app's model preload is slow
    page.get_by_role("tab", name="Cases").click()
    gallery = open_cases([ROOT / "assets" / "gallery"])
    n = len(gallery.cases)
    expect(page.locator("#cases-source")).to_contain_text(f"gallery: {n} items")
    expect(page.locator("#cases-count")).to_contain_text(f"{n} of {n} items match")
    first = gallery.cases[0]
    page.locator("#cases-table").get_by_text(first.name, exact=True).filter(visible=True).first.click()
    expect(page.locator("#cases-detail")).to_contain_text(first.note[:40])
    spans = page.locator("#cases-spans .af-span")
    expect(spans.first).to_be_visible()
    trace = load_trace(first, gallery.default_focus())
    assert spans.count() == len([s for s in trace.spans() if s.strip()])
    closest = gallery.trace_info(gallery.default_focus())[first.index].margin_round   # hover the closest call
    page.locator(f"#cases-spans .af-span[data-round='{closest}']").hover()
    expect(page.locator(f"#cases-spans .af-span[data-round='{closest}'] .af-tip")).to_contain_text(f"Round {closest}")
    page.screenshot(path=str(SHOTS / "screenshot-cases.png"), full_page=True)

    # open the run by its folder, filter to the items where the methods disagree, select one
    page.get_by_text("Open an eval run").click()
    page.locator("#cases-folder textarea").fill(str(run_dir))
    page.locator("#cases-open").click()
    expect(page.locator("#cases-count")).to_contain_text("3 of 3 items match")
    run = open_cases([run_dir])
    want = select(run, Query(outcomes=("disagree",)))
    page.get_by_label("AdaFuse and the single models do not all give the same answer").check()
    expect(page.locator("#cases-count")).to_contain_text(f"{len(want)} of 3 items match · filters: disagree")
    case = want[0][0]
    page.locator("#cases-table").get_by_text(case.name, exact=True).filter(visible=True).first.click()
    expect(page.locator("#cases-detail")).to_contain_text(case.question)
    trace = load_trace(case, run.default_focus())
    expect(page.locator("#cases-spans .af-span").first).to_be_visible()
    shown = page.locator("#cases-spans .af-spans").inner_text()
    want = "".join(f"[{s.strip()}]" for s in trace.spans() if s.strip())
    assert re.sub(r"\s+|⋔", "", shown) == want.replace(" ", "")
    expect(page.locator("#cases-candidates")).to_contain_text("fused score")

    # what if B = 2? the Studio takes the item's prompt and settings and runs it live
    branches = page.locator("#cases-b input[type=number]")
    branches.fill("2")
    branches.press("Enter")
    page.locator("#cases-rerun").click()
    expect(page.locator("#prompt textarea")).to_have_value(trace.prompt)
    expect(page.locator("#status")).to_contain_text("Done.", timeout=300_000)
    expect(page.locator("#spans .af-span").first).to_be_visible()


def test_an_error_toast_shows_user_text_literally(page):
    """Gradio renders a toast's text as HTML: a folder named `<b>x</b>_dir` came out in bold, and
    `<task>/<method>.jsonl` in a message vanished as a tag (issue 16, item 3)."""
    expect = sync_api.expect
    page.get_by_role("tab", name="Cases").click()
    folder = page.locator("#cases-folder textarea")
    if not folder.is_visible():
        page.get_by_text("Open an eval run").click()
    folder.fill("<b>x</b>_dir")
    page.locator("#cases-open").click()
    toast = page.locator(".toast-body").filter(has_text="_dir").last
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("<b>x</b>_dir")
    assert toast.locator("b").count() == 0
