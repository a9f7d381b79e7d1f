"""End to end: start the real app (python app.py) on a free port, offline, and drive it
through gradio_client like an API user would."""
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import adafuse
from adafuse.trace import Trace
from adafuse.ui.callbacks import INPUT_NAMES
from live_app import start_app, stop_app

ROOT = Path(__file__).resolve().parents[1]
A, B = "smollm2-135m-instruct", "gemma3-270m"
QA = "Open-domain QA (4-shot)"


@pytest.fixture(scope="module")
def app_log(tmp_path_factory) -> Path:
    """What the app prints (stdout and stderr, unbuffered)."""
    return tmp_path_factory.mktemp("app") / "app.log"


@pytest.fixture(scope="module")
def app_url(app_log):
    proc, url = start_app(app_log, ADAFUSE_MAX_NEW_TOKENS="128")
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def run_args(client, task=QA, **over):
    prompt, reference, fmt, stop, _, kind = client.predict(task, api_name="/task_preset")
    d = dict(model_a=A, model_b=B, model_c="(none)", prompt=prompt, tau=0.7, max_words=3, branches=1,
             max_new_tokens=4, stop=stop, prompt_format=fmt, task=kind, reference=reference)
    d.update(over)
    return list(d.values())


@pytest.fixture(scope="module")
def qa_run(client):
    job = client.submit(*run_args(client), api_name="/run")
    final = job.result(timeout=600)
    return final, job.outputs()


def test_the_default_pair_answers_the_qa_preset(client):
    """What a visitor gets without touching the model boxes: the pair requirements.txt installs,
    preloaded (ADAFUSE_PRELOAD=1), on the QA preset with the preset's own token budget."""
    prompt, reference, fmt, stop, tokens, kind = client.predict(QA, api_name="/task_preset")
    status, spans, cands, props, hist, text, summary, json_path, md_path = client.predict(
        *adafuse.DEFAULT_PAIR, "(none)", prompt, 0.7, 3, 1, tokens, stop, fmt, kind, reference, api_name="/run")
    assert status.startswith("**Done.**")
    # The pair's real answer, and a loss: both models are unsure of the first word (margins 0.01
    # and 0.06), and Gemma's " Vincent" beats Qwen's " Leonardo" in round 0 by 0.08 of fused score
    # although Qwen alone answers right (docs/RESULTS.md, "The lineup").
    assert text == " Vincent van Gogh"
    trace = Trace.from_dict(json.loads(Path(json_path).read_text(encoding="utf-8")))
    assert trace.models == list(adafuse.DEFAULT_PAIR) and trace.text == text


def test_api_is_documented(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/run", "/compare", "/task_preset", "/stop"} <= names


def test_api_names_its_parameters_and_outputs(client):
    """Issue 16, item 10: the endpoints took param_0 ... param_11 and returned value_37."""
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for endpoint in ("/run", "/compare"):
        assert [p["parameter_name"] for p in api[endpoint]["parameters"]] == list(INPUT_NAMES)
    assert [p["parameter_name"] for p in api["/task_preset"]["parameters"]] == ["preset"]
    assert [r["label"] for r in api["/run"]["returns"]][:2] == ["Status", "Output spans (HTML)"]
    assert [r["label"] for r in api["/compare"]["returns"]][:2] == ["Comparison status",
                                                                     "Methods side by side (HTML)"]
    labels = [r["label"] for e in api.values() for r in e["returns"]]
    assert not [x for x in labels if x.startswith("value_")]
    # named, a call needs only what differs from the page's defaults
    prompt, reference, fmt, stop, _, kind = client.predict(preset=QA, api_name="/task_preset")
    final = client.predict(model_a=A, model_b=B, prompt=prompt, max_new_tokens=4, stop=stop, prompt_format=fmt,
                           task=kind, reference=reference, api_name="/run")
    assert final[0].startswith("**Done.**") and "Leonardo" in final[5]


def test_the_readme_api_example_runs_as_written(app_url):
    """The README's API example, run against the app: the exports come back as files the client
    downloaded, and the example reads them as such."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("The API (`gradio_client`)", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Client("http://localhost:7860/")' in example
    scope = {}
    exec(example.replace("http://localhost:7860/", app_url), scope)
    assert scope["status"].startswith("**Done.**") and "Leonardo" in scope["text"]
    assert scope["trace"]["text"] == scope["text"] and scope["trace"]["models"] == [A, B]
    assert scope["summary"] == Path(scope["summary_file"]).read_text(encoding="utf-8")
    assert "Leonardo" in scope["summary"]


def test_run_streams_spans_and_the_candidate_table(qa_run):
    final, updates = qa_run
    assert len(updates) >= 2                            # streamed: status/rounds before the end
    status, spans, cands, props, hist, text, summary, json_path, md_path = final
    assert status.startswith("**Done.**")
    assert "Leonardo" in text
    assert spans.count("data-round=") >= 1 and '<span class="af-b">[</span>' in spans
    assert cands["headers"][:7] == ["round", "winner", "candidate", "proposed by", f"NLL {A}", f"NLL {B}",
                                    "fused score"]
    rounds = {row[0] for row in cands["data"]}
    assert sum(row[1] == "✓" for row in cands["data"]) == len(rounds)
    for row in cands["data"]:
        assert row[6] == pytest.approx((row[4] + row[5]) / 2, abs=2e-4)
    trace = Trace.from_dict(json.loads(Path(json_path).read_text(encoding="utf-8")))
    assert trace.text == text and trace.models == [A, B] and len(trace.rounds) == len(rounds)
    assert trace.bracketed() in Path(md_path).read_text(encoding="utf-8") == summary
    assert hist["type"] == "plotly"


def test_compare_returns_every_method_with_metrics(client, qa_run):
    status, cards, plot, table, summary, md_path = client.predict(*run_args(client), api_name="/compare")
    assert status.startswith("**Done.**")
    methods = [row[0] for row in table["data"]]
    assert methods == ["AdaFuse", f"greedy {A}", f"greedy {B}", "fixed L=1", "fixed L=2", "fixed L=3", "UniTE k=10", "GaC"]
    assert table["headers"][-2:] == ["exact match", "token F1"]
    assert table["data"][0][1] == qa_run[0][5]          # the same AdaFuse output as the run
    assert all(row[2] > 0 for row in table["data"])     # ensemble objective for every method
    fig = json.loads(plot["plot"])
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles[0].startswith("Ensemble objective") and "Metrics vs reference" in titles
    assert "| fixed L=1 |" in summary


def test_a_model_that_cannot_load_keeps_the_loaded_pair(client, qa_run):
    """Issue 16, item 7: choosing a preset that cannot load here (Llama, not cached, offline) is
    refused before the loaded models are released, so the next run with them loads nothing. The
    refusal is the run's status (and a toast), not an error that marks every output "Error"."""
    status = client.predict(*run_args(client, model_b="llama-3.1-8b-instruct"), api_name="/run")[0]
    assert status.startswith("**Not run: a model did not load.** preset 'llama-3.1-8b-instruct' is not available")
    assert "meta-llama/Llama-3.1-8B-Instruct" in status and status.endswith(f"Still loaded: {A}, {B}.")
    job = client.submit(*run_args(client), api_name="/run")
    final = job.result(timeout=600)
    assert final[0].startswith("**Done.**") and final[5] == qa_run[0][5]
    assert not [o for o in job.outputs() if str(o[0]).startswith("Loading")]


@pytest.mark.parametrize("over, message", [
    (dict(prompt=""), "prompt is empty"),
    # a prompt that is not text was decoded as its str()
    (dict(prompt=["Who painted", "the Mona Lisa?"]), "prompt must be text (a string), got list"),
    (dict(prompt=7), "prompt must be text (a string), got int 7"),
    # out of the sliders' ranges: refused naming the parameter (Gradio's "Value 0 is less than
    # minimum value 1." named none)
    (dict(tau=2.0), "tau must be in [0, 1], got 2.0"),
    (dict(branches=9), "branches (B) must be between 1 and 5 in this app, got 9"),
    (dict(max_new_tokens=0), "max_new_tokens must be between 1 and"),
    (dict(max_new_tokens=500), "max_new_tokens must be between 1 and 128 in this app, got 500"),
    (dict(max_words=2.5), "max_words (M) must be an integer"),
    (dict(prompt_format="json"), "prompt_format must be raw or chat, got 'json'"),
    (dict(model_b="gpt2"), "custom Hugging Face ids and local paths need ADAFUSE_ALLOW_CUSTOM_MODELS=1"),
])
def test_bad_input_is_refused_naming_the_parameter_without_a_traceback(client, app_log, over, message):
    """Issue 16, item 10: each refused call wrote a ~27-line traceback to the server log."""
    logged = app_log.stat().st_size
    with pytest.raises(AppError) as e:
        client.predict(*run_args(client, **over), api_name="/run")
    assert message in str(e.value), str(e.value)
    with pytest.raises(AppError, match="unknown task preset 'nope'; choose one of: Open-domain QA"):
        client.predict(preset="nope", api_name="/task_preset")
    with open(app_log, "rb") as log:
        log.seek(logged)
        assert b"Traceback" not in log.read()


def test_cancel_then_identical_concurrent_requests(client, qa_run):
    long = client.submit(*run_args(client, max_new_tokens=96, task="Grade-school math (step by step)"),
                         api_name="/run")
    deadline = time.monotonic() + 300
    while len(long.outputs()) < 2 and time.monotonic() < deadline and not long.done():
        time.sleep(0.2)
    long.cancel()
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(lambda: client.predict(*run_args(client), api_name="/run")) for _ in range(2)]
        a, b = [j.result(timeout=600) for j in jobs]
    assert a[5] == b[5] == qa_run[0][5]                 # same text as each other and as before
    assert a[2]["data"] == b[2]["data"] == qa_run[0][2]["data"]   # and the same decisions
