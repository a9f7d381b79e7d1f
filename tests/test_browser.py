"""A real browser (Debian's Chromium through Playwright) opens the app, runs an example and sees
the bracketed spans, the candidate table and the Plotly charts; then the Cases view: the gallery,
a run the harness made opened, filtered, an item selected and re-run. The tests save nothing:
scripts/screenshots.py takes the README's screenshots."""
import json
import re
import time
from pathlib import Path

import pytest

import adafuse
from adafuse.cases import Query, load_trace, open_cases, select
from live_app import (DESKTOP, PHONE, choose, chromium, chromium_path, pick_example, run_to_done, start_app,
                      stop_app)

ROOT = Path(__file__).resolve().parents[1]
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, run_dir):
    proc, url = start_app(tmp_path_factory.mktemp("app") / "app.log",
                          ADAFUSE_RUNS_ROOT=str(run_dir.parent))
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(app_url):
    with chromium(sync_api) as browser:
        pg = browser.new_page(viewport={"width": 1440, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(app_url)
        yield pg


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
    expect(page.locator("#spans .af-span .af-tip").first).to_contain_text("Round 1")   # rounds count from 1 on screen

    # candidate table with the winner marked, and the words-per-round Plotly chart
    table = page.locator("#candidates")
    expect(table).to_be_visible()
    expect(table).to_contain_text("fused score")
    expect(table.get_by_text("✓").first).to_be_visible()
    expect(page.locator("#histogram .js-plotly-plot")).to_be_visible()

    # the comparison runs after the run: methods side by side and the Plotly comparison chart
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-cards .af-card").nth(7)).to_be_visible(timeout=600_000)
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-cards")).to_contain_text("fixed L=3")
    expect(page.locator("#compare-cards")).to_contain_text("UniTE k=10")   # a baseline of the paper's Table 1
    expect(page.locator("#compare-cards")).to_contain_text("GaC")


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
    expect(page.locator(f"#cases-spans .af-span[data-round='{closest}'] .af-tip")).to_contain_text(f"Round {closest + 1}")

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
    expect(page.locator("#task-preset input")).to_have_value("")    # it no longer names the old preset
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


# ---- Stop, and a new run while the comparison runs (issue 16, items 1, 2 and 5) ----------------

def wait_for_round(page, n):
    """Until the live status reads 'Decoding… round k' with k >= n."""
    page.wait_for_function("(n) => { const m = document.querySelector('#status').innerText"
                           ".match(/round (\\d+)/); return m && +m[1] >= n; }", arg=n, timeout=300_000)


def no_error_badges(page):
    """No "Error" badge on the Studio's outputs (the Cases tab may hold the toast test's)."""
    outputs = page.locator("#status, #spans, #candidates, #proposals, #histogram, #compare-status, "
                           "#compare-cards, #compare-plot")
    sync_api.expect(outputs.get_by_text("Error", exact=True)).to_have_count(0)


def download_text(page, button) -> str:
    with page.expect_download() as info:
        page.locator(button).click()
    return Path(info.value.path()).read_text(encoding="utf-8")


def test_stop_after_a_completed_run_ends_cleanly_and_exports_the_stopped_run(page, app_url):
    """Run QA to Done, then a long free chat stopped mid-way: 'Stopped.' with the rounds so far,
    no cursor and no Error badges, and Export holds the stopped run, not the QA one."""
    expect = sync_api.expect
    page.goto(app_url)             # the default pair and settings (the Cases re-run changed them)
    pick_example(page, "Open-domain QA (4-shot)", "mona lisa")
    run_to_done(page)
    pick_example(page, "Free chat", "Singapore", max_tokens=200)
    page.locator("#run").click()
    wait_for_round(page, 4)
    page.locator("#stop").click()

    expect(page.locator("#status")).to_contain_text("Stopped.", timeout=30_000)
    expect(page.locator("#spans .af-cursor")).to_have_count(0)
    expect(page.locator("#spans")).not_to_contain_text("decoding…")
    no_error_badges(page)
    assert page.locator("#spans .af-span").count() >= 4
    shown = page.locator("#spans .af-spans").inner_text()
    proposal_rows = int(page.locator("#proposals [role=grid]").get_attribute("aria-rowcount")) - 1

    page.get_by_role("tab", name="Export").click()
    text = page.locator("#output-text textarea").input_value()
    assert text.strip() and re.sub(r"[\s\[\]⋔]", "", shown) == re.sub(r"\s", "", text)
    trace = json.loads(download_text(page, "#download-json"))
    assert "Singapore" in trace["prompt"] and trace["text"] == text
    assert trace["stats"]["stop_reason"] == "cancelled" and len(trace["rounds"]) >= 4
    assert proposal_rows == 2 * len(trace["rounds"])         # the table holds every round so far
    summary = download_text(page, "#download-md")
    assert "Singapore" in summary and "mona lisa" not in summary
    # a stopped run is not compared: the Compare tab says so instead of comparing it
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-status")).to_contain_text("the run was stopped", timeout=30_000)
    page.get_by_role("tab", name="Rounds").click()


def comparison_under_way(page, step: str) -> None:
    """Run the QA preset to Done with the automatic comparison on, and wait on the Compare tab
    until the comparison reaches `step` ("(2/7)")."""
    auto_compare(page).check()
    pick_example(page, "Open-domain QA (4-shot)", "mona lisa")
    run_to_done(page)
    page.get_by_role("tab", name="Compare").click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text(step, timeout=300_000)


def test_stop_during_the_comparison_ends_it_cleanly(page):
    expect = sync_api.expect
    comparison_under_way(page, "(2/7)")
    page.locator("#stop").click()
    expect(page.locator("#compare-status")).to_contain_text("Comparison stopped", timeout=30_000)
    expect(page.locator("#compare-status")).not_to_contain_text("Running")
    assert page.locator("#compare-cards .af-card").count() >= 2      # the methods measured so far
    expect(page.locator("#status")).to_contain_text("Done.")        # the run itself stays done
    no_error_badges(page)
    page.get_by_role("tab", name="Rounds").click()


def auto_compare(page):
    return page.get_by_label("Compare with single models and fixed-length rounds after each run")


def test_stop_with_nothing_running_changes_nothing(page):
    auto_compare(page).uncheck()
    pick_example(page, "Open-domain QA (4-shot)", "mona lisa")
    run_to_done(page)
    shown = page.locator("#status [data-testid=markdown]")
    before = shown.inner_text()
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.locator("#stop").click()
    page.wait_for_timeout(1000)                      # what the answer would have written is written
    assert shown.inner_text() == before
    no_error_badges(page)
    auto_compare(page).check()


def test_a_new_run_does_not_wait_for_the_comparison(page):
    """The automatic comparison holds the only decode slot; a new Run pre-empts it instead of
    queueing behind it, and the Compare tab says why it ended."""
    expect = sync_api.expect
    comparison_under_way(page, "(1/7)")
    page.locator("#run").click()
    expect(page.locator("#compare-status")).to_contain_text("cancelled by a new run", timeout=30_000)
    expect(page.locator("#status")).to_contain_text("Done.", timeout=300_000)
    no_error_badges(page)
    page.get_by_role("tab", name="Rounds").click()


def test_a_run_that_waits_for_the_decoder_says_what_for(page, app_url):
    """Another visitor's decode holds the slot: the Run says it waits for it, then runs."""
    from gradio_client import Client

    expect = sync_api.expect
    page.locator("#stop").click()                  # this tab's own comparison, if one still runs
    client = Client(app_url, verbose=False)
    prompt, reference, fmt, stop, _, kind = client.predict("Grade-school math (step by step)",
                                                           api_name="/task_preset")
    other = client.submit(*adafuse.DEFAULT_PAIR, "(none)", prompt, 0.7, 3, 1, 48, stop, fmt, kind, reference,
                          api_name="/run")
    while not other.outputs() and not other.done():
        time.sleep(0.2)
    pick_example(page, "Open-domain QA (4-shot)", "mona lisa")
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text("Waiting for another request", timeout=30_000)
    expect(page.locator("#status")).to_contain_text("Done.", timeout=300_000)
    assert other.result(timeout=300)[0].startswith("**Done.**")
    no_error_badges(page)


# ---- Hover cards on screen, desktop and phone (issue 16, item 4) --------------------------------

def inside(box, viewport) -> bool:
    return (box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            and box["y"] + box["height"] <= viewport["height"])


def test_every_hover_card_lies_inside_the_viewport(page, app_url):
    """The cards opened from the span's left edge, up to 680 px wide: half of a 32-token run's
    ended past a 1440 px screen, and on a phone past 390 px. Escape closes a focused card."""
    from conftest import TEST_PAIR

    expect = sync_api.expect
    page.goto(app_url)
    page.set_viewport_size(DESKTOP)
    auto_compare(page).uncheck()
    choose(page, "#model-a", TEST_PAIR[0])
    choose(page, "#model-b", TEST_PAIR[1])
    pick_example(page, "Free chat", "Singapore", max_tokens=32)
    run_to_done(page)
    spans = page.locator("#spans .af-span")
    assert spans.count() >= 8
    try:
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            outside = []
            for i in range(spans.count()):
                page.mouse.move(0, 0)                 # the previous card closes
                spans.nth(i).hover()
                tip = spans.nth(i).locator(".af-tip")
                expect(tip).to_be_visible()
                box = tip.bounding_box()
                if not inside(box, viewport):
                    outside.append((i, {k: round(v) for k, v in box.items()}))
            assert not outside, f"cards outside {viewport}: {outside}"
        page.mouse.move(0, 0)
        last = spans.last
        last.focus()
        expect(last.locator(".af-tip")).to_be_visible()
        assert inside(last.locator(".af-tip").bounding_box(), PHONE)
        page.keyboard.press("Escape")
        expect(last.locator(".af-tip")).to_be_hidden()
    finally:
        page.set_viewport_size({"width": 1440, "height": 1000})
        auto_compare(page).check()


# ---- Tables and charts readable on desktop and phone (issue 16, item 8) -------------------------

HEADER_LINES = """(sel) => [...document.querySelectorAll(sel + ' th .header')].map((h) => {
    const r = document.createRange(); r.selectNodeContents(h);
    const tops = new Set([...r.getClientRects()].filter((b) => b.width > 0).map((b) => Math.round(b.top)));
    return [h.innerText.trim(), tops.size]; })"""


def broken_headers(page, table):
    """Header cells rendered on more lines than they have words (broken inside a word); a line
    may end after a hyphen ("smollm2-135m-instruct" counts three words)."""
    cells = page.evaluate(HEADER_LINES, table)
    assert cells, f"no header cells in {table}"
    return [(text, lines) for text, lines in cells if lines > len(re.findall(r"[^\s-]+-?", text))]


def test_table_headers_and_compare_charts_stay_readable(page, app_url):
    """Headers broke mid-word ('rou nd', 'win ner') on desktop and letter by letter on a phone,
    and the Compare tab's charts were squeezed into 326 px on a phone."""
    from conftest import TEST_PAIR

    expect = sync_api.expect
    page.goto(app_url)
    page.set_viewport_size(DESKTOP)
    choose(page, "#model-a", TEST_PAIR[0])
    choose(page, "#model-b", TEST_PAIR[1])
    pick_example(page, "Open-domain QA (4-shot)", "mona lisa")
    run_to_done(page)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-cards .af-card").nth(4)).to_be_visible(timeout=300_000)
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()
    try:
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            page.get_by_role("tab", name="Compare").click()
            assert broken_headers(page, "#compare-table") == [], viewport
            if viewport is PHONE:
                widths = [b["width"] for b in (d.bounding_box() for d in page.locator("#compare-plot .nsewdrag").all())]
                assert len(widths) == 4 and min(widths) >= 300, widths
            page.get_by_role("tab", name="Rounds").click()
            for table in ("#candidates", "#proposals"):
                assert broken_headers(page, table) == [], (viewport, table)
    finally:
        page.set_viewport_size({"width": 1440, "height": 1000})


def test_run_and_its_feedback_are_in_view_together(page, app_url):
    """Run sat at y ~ 1850 at 1440x900 while the status and output were at the top; on a phone
    the output started 438 px below Run (issue 16, item 6)."""
    try:
        page.set_viewport_size(DESKTOP)
        page.goto(app_url)
        for el in ("#run", "#stop", "#status"):
            assert inside(page.locator(el).bounding_box(), DESKTOP), el
        page.set_viewport_size(PHONE)
        run, status, output = (page.locator(el).bounding_box() for el in ("#run", "#status", "#spans"))
        assert 0 <= status["y"] - (run["y"] + run["height"]) <= 60, (run, status)   # right below Run
        assert output["y"] + 80 <= run["y"] + PHONE["height"], (run, output)       # on Run's screen
    finally:
        page.set_viewport_size({"width": 1440, "height": 1000})


def test_the_cases_table_keeps_readable_columns_on_a_phone(page, app_url):
    """On a phone the items table squeezed its text columns into 36-65 px, one word per line; they
    keep their width and the table scrolls sideways (issue 16, item 8)."""
    try:
        page.set_viewport_size(PHONE)
        page.goto(app_url)
        page.get_by_role("tab", name="Cases").click()
        sync_api.expect(page.locator("#cases-table th").first).to_be_visible()
        widths = page.evaluate("[...document.querySelectorAll('#cases-table th')].map((th) => "
                               "[th.innerText.trim(), th.getBoundingClientRect().width])")
        text_columns = widths[2:-3]              # question, reference, each method's answer
        assert text_columns and all(w >= 120 for _, w in text_columns), widths
    finally:
        page.set_viewport_size({"width": 1440, "height": 1000})


def test_a_preset_that_cannot_load_here_is_refused_cleanly(page, app_url):
    """Issue 16, items 7 and 9: Llama (not cached, offline) is labelled in its box and named as
    soon as it is chosen, in the status and a toast titled for what happened; Run then ends on
    that status, not on "Loading…" with Error badges, and the comparison says why it did not
    start. And M's number box and slider agree as soon as 9 is typed into the box."""
    expect = sync_api.expect
    page.goto(app_url)
    number, slider = page.locator("#max-words input[type=number]"), page.locator("#max-words input[type=range]")
    number.fill("9")
    expect(number).to_have_value("5")
    expect(slider).to_have_value("5")

    choose(page, "#model-b", "llama-3.1-8b-instruct")
    expect(page.locator("#model-b input")).to_have_value("llama-3.1-8b-instruct (not available here)")
    status = page.locator("#status")
    expect(status).to_contain_text("Not available here. preset 'llama-3.1-8b-instruct' is not available")
    toast = page.locator("[data-testid=toast-text]").filter(has_text="llama-3.1-8b-instruct")
    expect(toast).to_have_count(1)                   # once, not once per event the box sends
    expect(toast).to_contain_text("Model not loaded: preset 'llama-3.1-8b-instruct' is not available")
    page.locator("#run").click()
    expect(status).to_contain_text("Not run: a model did not load.", timeout=30_000)
    expect(status).to_contain_text("meta-llama/Llama-3.1-8B-Instruct")
    expect(status).not_to_contain_text("Loading")
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-status")).to_contain_text("Not compared: the run did not start.")
    no_error_badges(page)
    page.get_by_role("tab", name="Rounds").click()
