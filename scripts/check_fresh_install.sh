#!/usr/bin/env bash
# The README's first command on a fresh clone and a fresh venv, checked end to end:
#   bash scripts/check_fresh_install.sh [--cold]
# clones this repository's HEAD into a temporary folder, makes a new venv there, runs exactly
#   pip install torch==2.13.0 -r requirements.txt && python app.py
# (no other install line), waits for the page, and asks the app, through gradio_client as a user's
# script would, for the QA preset on the default pair (the model boxes' values). Prints the answer
# and the seconds each step took. --cold also gives the app an empty model cache, so the default
# pair is assembled and converted from the installed packages, as on a new machine or a Space.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/adafuse-fresh.XXXXXX)
trap 'kill $APP 2>/dev/null || true; rm -rf "$WORK"' EXIT
APP=
cd "$WORK"
git clone -q "$ROOT" clone && cd clone
python3 -m venv "$WORK/venv" && . "$WORK/venv/bin/activate"
t0=$SECONDS
pip install -q --disable-pip-version-check torch==2.13.0 -r requirements.txt
echo "install: $((SECONDS - t0)) s"
ENV=(HF_HUB_OFFLINE=1 GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT=7899 GRADIO_ANALYTICS_ENABLED=False)
[[ ${1:-} == --cold ]] && ENV+=(ADAFUSE_CACHE="$WORK/cache")
t0=$SECONDS
env "${ENV[@]}" python app.py > "$WORK/app.log" 2>&1 &
APP=$!
python - <<'EOF' || { tail -n 40 "$WORK/app.log"; exit 1; }
import time, urllib.request
from gradio_client import Client
url, t0 = "http://127.0.0.1:7899/", time.time()
while True:
    try:
        urllib.request.urlopen(url, timeout=5)
        break
    except OSError:
        if time.time() - t0 > 300:
            raise SystemExit("the app did not answer within 300 s")
        time.sleep(0.5)
print(f"page answers after {time.time() - t0:.0f} s", flush=True)
client = Client(url, verbose=False)
config = client.config
defaults = {c["props"].get("label"): c["props"].get("value") for c in config["components"] if c.get("type") == "dropdown"}
a, b = defaults["Model A"], defaults["Model B"]
prompt, ref, fmt, stop, tokens, task = client.predict("Open-domain QA (4-shot)", api_name="/task_preset")
for attempt in ("first", "second"):
    t = time.time()
    out = client.predict(a, b, "(none)", prompt, 0.7, 3, 1, tokens, stop, fmt, task, ref, api_name="/run")
    print(f"{attempt} QA answer of the default pair ({a} + {b}): {out[5]!r} in {time.time() - t:.1f} s; "
          f"status: {out[0].splitlines()[0]}", flush=True)
assert out[0].startswith("**Done.**") and out[5].strip(), out[0]
EOF
echo "app start to second answer: $((SECONDS - t0)) s"
