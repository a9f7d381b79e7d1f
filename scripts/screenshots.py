"""Regenerate the README's screenshots: start `python app.py` offline on the default pair
(gemma3-270m + qwen2.5-coder-0.5b-instruct, what a visitor gets; both must be in the model cache),
drive Debian's Chromium like a user and save, at 1440x900 (desktop) and 390x844 (phone):

  docs/screenshot.png                the Studio after the QA preset's run, a hover card open
  docs/screenshot-compare.png        the Compare tab once the automatic comparison is done
  docs/screenshot-cases.png          Cases: the gallery with an item selected, a hover card open
  docs/screenshot-phone.png          the phone layout: Run, then the status and output below it
  docs/screenshot-phone-compare.png  the phone layout of the Compare charts

Each is one screen (the viewport) scrolled to what it shows, not the whole page (the Cases one
runs from the page's top down to the open card), in a 256-colour palette: each PNG is under
200 KB. About 2 minutes on a 2-core CPU, most of it loading the pair, the QA run and its comparison.

  python scripts/screenshots.py               # writes docs/screenshot*.png
  python scripts/screenshots.py --out /tmp/shots --url http://127.0.0.1:7860/   # an app already running
"""
import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from playwright import sync_api

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]          # adafuse, and the tests' live_app helpers
from adafuse.cases import open_cases  # noqa: E402
from live_app import DESKTOP, PHONE, chromium, pick_example, run_to_done, start_app, stop_app  # noqa: E402

QA = ("Open-domain QA (4-shot)", "mona lisa")
SPAN = "#spans .af-span"


@contextmanager
def app(url: str | None):
    """The app at `url`, or a fresh one on the default pair, stopped afterwards."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_app(Path(tmp) / "app.log")
        try:
            yield url
        finally:
            stop_app(proc)


def scroll_to(page, selector: str, margin: int = 8):
    """Scroll so that `selector`'s top sits `margin` px below the top of the screen."""
    page.evaluate("([sel, m]) => window.scrollTo(0, document.querySelector(sel).getBoundingClientRect().top"
                  " + window.scrollY - m)", [selector, margin])


def hover_card(page, span):
    """Hover `span` (a locator) and wait for its card; the pointer leaves the previous one first."""
    page.mouse.move(0, 0)
    span.hover()
    sync_api.expect(span.locator(".af-tip")).to_be_visible()


def save(page, path: Path, down_to: str | None = None):
    """One screen, or with `down_to` the page from its top down to the bottom of that element."""
    if down_to is None:
        page.screenshot(path=str(path))
    else:
        bottom = page.evaluate("(sel) => Math.max(...[...document.querySelectorAll(sel)].map((el) => "
                               "el.getBoundingClientRect().bottom)) + window.scrollY", down_to)
        width = page.viewport_size["width"]
        page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom + 16})
    # a screen of flat UI colours loses nothing visible to a 256-colour palette, and the PNG
    # shrinks to about a third
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB")


def studio(page, out: Path):
    """The QA preset run to Done; the card of a round the models contested (or the first)."""
    pick_example(page, *QA)
    run_to_done(page)
    spans = page.locator(SPAN)
    contested = page.locator(f"{SPAN}:not(.af-agree)")
    hover_card(page, contested.first if contested.count() else spans.first)
    save(page, out / "screenshot.png")


def compare(page, out: Path):
    """The Compare tab once the automatic comparison of the QA run has measured all 7 methods."""
    expect = sync_api.expect
    page.mouse.move(0, 0)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-cards .af-card").nth(6)).to_be_visible(timeout=600_000)
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-status")).not_to_contain_text("Running", timeout=600_000)
    scroll_to(page, "#compare-status", margin=60)
    save(page, out / "screenshot-compare.png")


def phone(page, out: Path):
    """The same page on a phone: Run with the status and output below it, then the charts."""
    page.set_viewport_size(PHONE)
    page.mouse.move(0, 0)
    page.get_by_role("tab", name="Rounds").click()
    scroll_to(page, "#run")
    save(page, out / "screenshot-phone.png")
    page.get_by_role("tab", name="Compare").click()
    scroll_to(page, "#compare-plot")
    save(page, out / "screenshot-phone-compare.png")
    page.set_viewport_size(DESKTOP)


def cases(page, out: Path):
    """The gallery with its first item selected and the card of its closest round open: the page
    from its top down to that card (one screen holds either the table or the item, not both)."""
    gallery = open_cases([REPO / "assets" / "gallery"])
    first = gallery.cases[0]
    closest = gallery.trace_info(gallery.default_focus())[first.index].margin_round
    page.get_by_role("tab", name="Cases").click()
    page.locator("#cases-table").get_by_text(first.name, exact=True).filter(visible=True).first.click()
    sync_api.expect(page.locator("#cases-detail")).to_contain_text(first.note[:40])
    span = page.locator(f"#cases-spans .af-span[data-round='{closest}']")
    hover_card(page, span)
    save(page, out / "screenshot-cases.png", down_to="#cases-spans, #cases-spans .af-tip")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs (default: docs)")
    ap.add_argument("--url", help="an app already running (default: start python app.py)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with app(args.url) as url, chromium(sync_api) as browser:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(120_000)
        page.goto(url)
        studio(page, args.out)
        compare(page, args.out)
        phone(page, args.out)
        cases(page, args.out)
    print(f"{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
