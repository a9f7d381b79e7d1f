"""The real app, live: start `python app.py` on a free port (offline), open it in Debian's
Chromium through Playwright, and act on it as a user would. Shared by the end-to-end and browser
tests and by scripts/screenshots.py, which regenerates the README's screenshots."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log_path: Path, **env_extra) -> tuple[subprocess.Popen, str]:
    """Run app.py as a subprocess; return it and its URL once the page answers."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", ADAFUSE_PRELOAD="1", PYTHONUNBUFFERED="1", **env_extra)
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app.py did not answer within 240 s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@contextmanager
def chromium(sync_api):
    """Debian's Chromium, headless, with nothing in the background that would reach the network."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


# ---- what a user does -------------------------------------------------------------------------

def pick_example(page, name, hint, max_tokens=None):
    page.get_by_role("tab", name="Studio").click()
    page.get_by_role("button", name=name).click()
    page.wait_for_function(f"document.querySelector('#prompt textarea').value.includes({hint!r})")
    if max_tokens is not None:
        number = page.locator("#max-new-tokens input[type=number]")
        number.fill(str(max_tokens))
        number.press("Enter")


def run_to_done(page):
    """Run, and wait for this run's 'Done.' (an earlier run's may still be on screen)."""
    page.evaluate("""() => { const el = document.querySelector('#status'); window.afStarted = false;
        new MutationObserver(() => { window.afStarted ||= /Decoding|Loading/.test(el.innerText); })
            .observe(el, {subtree: true, childList: true, characterData: true}); }""")
    page.locator("#run").click()
    page.wait_for_function("window.afStarted && document.querySelector('#status').innerText.includes('Done.')",
                           timeout=300_000)


def choose(page, box, value):
    """Pick a dropdown's choice by its value (its label may carry a note such as '(embedded)')."""
    page.locator(f"{box} input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(value))).first.click()
