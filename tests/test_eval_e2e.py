"""A small end-to-end eval on the embedded pair: the real CLI and the real engine, two items, a
few tokens each. Model loading is shared with the other tests through conftest's `lms`."""
import json

import pytest

import adafuse
from adafuse.eval import cli
from adafuse.trace import Trace

PROMPT = ("Question: What is the capital of Italy?\nAnswer: Rome\n\n"
          "Question: What is the capital of Germany?\nAnswer: Berlin")
ITEMS = [{"question": "What is the capital of France?", "answer": ["Paris"]},
         {"question": "What is the capital of Spain?", "answer": "Madrid"}]


@pytest.fixture(scope="module")
def eval_run(lms, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_e2e")
    (root / "qa.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    (root / "prompt.txt").write_text(PROMPT)
    out = root / "out"
    by_name = {lm.name: lm for lm in lms}
    names = list(by_name)

    def engine(models, args, device):
        assert models == names                  # every model the methods need, loaded once
        return (lambda ms, prompt, cfg: adafuse.generate([by_name[m] for m in ms], prompt, cfg)), lms

    original = cli._engine
    cli._engine = engine
    try:
        rc = cli.main(["--task", "custom", "--data", str(root / "qa.jsonl"), "--prompt-file", str(root / "prompt.txt"),
                       "--metric", "em", "--stop", "\\n", "--max-new-tokens", "6", "--models", ",".join(names),
                       "--methods", "adafuse,fixed:1,greedy", "--out", str(out), "--no-progress"])
    finally:
        cli._engine = original
    assert rc == 0
    return out, names


def records(out, slug):
    return [json.loads(x) for x in (out / "custom" / f"{slug}.jsonl").read_text().splitlines()]


def test_every_method_answers_every_item_with_a_full_trace(eval_run):
    out, names = eval_run
    slugs = ["adafuse_tau0.7_M3_B1", "fixed_L1"] + [f"greedy_{n}" for n in names]
    for slug in slugs:
        recs = records(out, slug)
        assert [r["line"] for r in recs] == [1, 2]
        for r in recs:
            trace = Trace.from_dict(r["trace"])
            assert trace.text == r["prediction"] and "\n" not in r["prediction"]      # stop string applied
            assert r["words_per_round"] == trace.words_per_round() and r["forward_passes"] > 0
            assert trace.prompt.endswith(f"Berlin\n\nQuestion: {ITEMS[r['line'] - 1]['question']}\nAnswer:")
            assert trace.settings["max_new_tokens"] == 6
    ada = records(out, "adafuse_tau0.7_M3_B1")
    assert all(1 <= w <= 3 for r in ada for w in r["words_per_round"])
    assert all(Trace.from_dict(r["trace"]).models == names for r in ada)
    assert all(w == 1 for r in records(out, "fixed_L1") for w in r["words_per_round"])
    for n in names:
        assert all(Trace.from_dict(r["trace"]).models == [n] for r in records(out, f"greedy_{n}"))


def test_the_pair_and_each_model_know_these_capitals(eval_run):
    out, names = eval_run
    summary = json.loads((out / "summary.json").read_text())
    cells = summary["tasks"]["custom"]["methods"]
    for slug in ["adafuse_tau0.7_M3_B1", "fixed_L1"] + [f"greedy_{n}" for n in names]:
        assert [r["answer"] for r in records(out, slug)] == ["Paris", "Madrid"]
        assert cells[slug]["n"] == 2 and cells[slug]["score"] == 100.0 and cells[slug]["scores"]["f1"] == 100.0
    assert summary["models"] == names
    md = (out / "report.md").read_text()
    assert "| adafuse |" in md and "| fixed:1 |" in md
    assert (out / "report.html").stat().st_size > 1_000_000          # plotly.js inlined


def test_process_device_shares_gpus_round_robin_and_keeps_a_named_device():
    assert cli.process_device("auto", 5, 2) == "cuda:1"
    assert cli.process_device("auto", 3, 1) == "cuda:0"     # more processes than GPUs share it
    assert cli.process_device("auto", 3, 0) == "cpu"
    assert cli.process_device("cuda:1", 0, 8) == "cuda:1"
    # the processes of one machine that share a device's memory, by the same mapping
    assert cli.processes_on("cuda:0", "auto", 14, 1) == 14
    assert [cli.processes_on(f"cuda:{g}", "auto", 5, 2) for g in (0, 1)] == [3, 2]
    assert cli.processes_on("cuda", "cuda", 4, 2) == 4                  # a named device: all of them
    assert cli.processes_on("cpu", "auto", 2, 0) == 2


def test_accelerate_launch_shards_items_and_merges_the_same_records(eval_run, tmp_path):
    """Two real processes under `accelerate launch` (gloo barrier, CPU): the merged greedy records
    equal the one-process run's. `--multi_gpu` names accelerate's multi-process launcher (torchrun);
    without it a CPU launch starts one process."""
    import os
    import socket
    import subprocess
    import sys

    out, names = eval_run
    root = out.parent
    with socket.socket() as s:                   # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sharded = tmp_path / "sharded"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "adafuse", "eval", "--task", "custom", "--data", str(root / "qa.jsonl"),
           "--prompt-file", str(root / "prompt.txt"), "--metric", "em", "--stop", "\\n",
           "--max-new-tokens", "6", "--models", names[0], "--methods", "greedy", "--device", "cpu",
           "--threads", "1", "--out", str(sharded), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    slug = f"greedy_{names[0]}"
    assert sorted(p.name for p in (sharded / "custom").iterdir()) == [f"{slug}.jsonl"]   # rank files merged
    got, want = records(sharded, slug), records(out, slug)
    assert [r["line"] for r in got] == [1, 2]
    assert [(r["prediction"], r["metrics"]) for r in got] == [(r["prediction"], r["metrics"]) for r in want]
    assert json.loads((sharded / "run.json").read_text())["invocations"][0]["processes"] == 2
