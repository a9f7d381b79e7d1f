"""Startup benchmark: seconds from `python app.py` to the page answering (HTTP 200 on /), with
the model cache warm. Prints, side by side in one run, a bare `import gradio` as a baseline and
the ratio of the two, and (with --first-run) the seconds until the first AdaFuse request
returns through the API (model load included).

    python scripts/bench_startup.py --repeats 3 [--first-run]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_import_gradio() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True)
    return time.perf_counter() - t0


def time_app_start(first_run: bool, timeout: float = 300) -> tuple[float, float | None]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False")
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with code {proc.returncode}")
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"app.py did not answer within {timeout} s")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        page = time.perf_counter() - t0
        first = None
        if first_run:
            from gradio_client import Client
            client = Client(url, verbose=False)
            prompt, ref, fmt, stop, _, task = client.predict("Open-domain QA (4-shot)", api_name="/task_preset")
            import adafuse
            client.predict(*adafuse.DEFAULT_PAIR, "(none)", prompt, 0.7, 3, 1, 8, stop, fmt,
                           task, ref, api_name="/run")
            first = time.perf_counter() - t0
        return page, first
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--first-run", action="store_true", help="also time the first /run request (8 tokens)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import adafuse
    cold = [n for n in adafuse.DEFAULT_PAIR if not adafuse.is_cached(n)]
    if cold:
        print(f"warning: {', '.join(cold)} not converted yet; the first run will convert them", file=sys.stderr)
    base, page, first = [], [], []
    for i in range(args.repeats):
        base.append(time_import_gradio())
        p, f = time_app_start(args.first_run)
        page.append(p)
        if f is not None:
            first.append(f)
        print(f"run {i + 1}: import gradio {base[-1]:.2f} s | app.py to page answering {p:.2f} s"
              + (f" | to first 8-token AdaFuse result {f:.2f} s" if f is not None else ""), flush=True)
    mb, mp = statistics.median(base), statistics.median(page)
    print(f"median: import gradio {mb:.2f} s, app.py to page answering {mp:.2f} s "
          f"(ratio {mp / mb:.2f}x of a bare gradio import)"
          + (f", first AdaFuse result {statistics.median(first):.2f} s" if first else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
