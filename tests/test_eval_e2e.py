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
        return lambda ms, prompt, cfg: adafuse.generate([by_name[m] for m in ms], prompt, cfg)

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
