"""summary.json, the Markdown report and the offline Plotly HTML, from hand-made records."""
import json
import math
import re
import sys

import pytest

from adafuse.eval import report, runner, tasks

MODELS = ["alpha", "beta"]


def record(key, line, prediction, answer, metrics, words, seconds=1.0, passes=10, reference=("x",)):
    return {"key": key, "line": line, "prediction": prediction, "answer": answer, "metrics": metrics,
            "reference": list(reference), "words_per_round": words, "seconds": seconds, "forward_passes": passes,
            "error": None, "trace": {"stats": {"forward_passes": {"alpha": passes // 2, "beta": passes - passes // 2},
                                               "new_tokens": {"alpha": 4, "beta": 5}, "stop_reason": "eos"}}}


def test_words_histogram_by_hand():
    h = report.words_histogram([1, 1, 1, 2, 3, 5])
    assert h == {"1": 50.0, "2": 16.67, "3": 16.67, "4+": 16.67, "rounds": 6}
    assert report.words_histogram([]) == {"1": 0.0, "2": 0.0, "3": 0.0, "4+": 0.0, "rounds": 0}


@pytest.fixture
def two_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("SACREBLEU", str(tmp_path / "no-spm"))
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"q{i}", "answer": "x"}) + "\n" for i in range(4)))
    mt = tmp_path / "mt.jsonl"
    mt.write_text(json.dumps({"question": "Hallo", "answer": "a b c d e f g h"}) + "\n"
                  + json.dumps({"question": "Welt", "answer": "the cat sat on the mat"}) + "\n")
    qa_task = tasks.load_custom(qa, "em", name="qa")
    mt_task = tasks.load_custom(mt, "bleu", name="mt")
    methods = runner.parse_methods(["adafuse", "fixed:1", "fixed:2", "greedy"], MODELS, sweeps=["branches=1,2"])
    results = {"qa": {}, "mt": {}}
    for m in methods:
        right = {"adafuse_tau0.7_M3_B1": 3, "adafuse_tau0.7_M3_B2": 4}.get(m.slug, 1)
        results["qa"][m.slug] = [record(it.key, it.line, "x" if i < right else "y", "x" if i < right else "y",
                                        {"em": float(i < right), "f1": float(i < right)},
                                        [1, 1, 2] if m.mode == "adafuse" else [m.fixed_words or 1])
                                 for i, it in enumerate(qa_task.items)]
        results["mt"][m.slug] = [record(mt_task.items[0].key, 1, "a b c d", "a b c d", {}, [1, 3], 2.0, 20,
                                        ["a b c d e f g h"]),
                                 record(mt_task.items[1].key, 2, "the cat sat on the mat", "the cat sat on the mat",
                                        {}, [3], 4.0, 30, ["the cat sat on the mat"])]
    # A stale record (its question changed since) must not count.
    results["qa"]["greedy_alpha"].append(record("99:deadbeef", 99, "x", "x", {"em": 1.0, "f1": 1.0}, [1]))
    return [qa_task, mt_task], methods, results


def test_summary_values(two_tasks):
    task_list, methods, results = two_tasks
    s = report.summarize(task_list, methods, results, extra={"command": "python -m adafuse eval ..."})
    qa = s["tasks"]["qa"]["methods"]
    assert qa["adafuse_tau0.7_M3_B1"]["score"] == 75.0 and qa["adafuse_tau0.7_M3_B2"]["score"] == 100.0
    assert qa["greedy_alpha"]["n"] == 4 and qa["greedy_alpha"]["score"] == 25.0
    assert qa["adafuse_tau0.7_M3_B1"]["words_per_round"] == {"1": 66.67, "2": 33.33, "3": 0.0, "4+": 0.0, "rounds": 12}
    assert qa["fixed_L2"]["words_per_round"]["2"] == 100.0
    assert qa["adafuse_tau0.7_M3_B1"]["forward_passes_by_model"] == {"alpha": 5.0, "beta": 5.0}
    mt = s["tasks"]["mt"]
    cell = mt["methods"]["fixed_L1"]
    # corpus BLEU over both sentences: 1-4 gram matches (4+6, 3+5, 2+4, 1+3) / same totals, BP exp(1 - 14/10)
    assert cell["scores"]["bleu"] == pytest.approx(round(100 * math.exp(1 - 14 / 10), 2))
    assert cell["bleu_kind"] == "BLEU (13a)" and mt["bleu_kind"] == "BLEU (13a)"
    assert cell["seconds_mean"] == 3.0 and cell["forward_passes_mean"] == 25.0
    assert s["command"] == "python -m adafuse eval ..."
    assert report.sweep_series(s, "branches") == {"qa": {1: 75.0, 2: 100.0}, "mt": {1: cell["score"], 2: cell["score"]}}
    assert report.sweep_series(s, "tau") == {}


def test_markdown_and_html(two_tasks, tmp_path):
    task_list, methods, results = two_tasks
    s = report.summarize(task_list, methods, results)
    md = report.markdown(s)
    assert "| adafuse B=2 | 100.0 |" in md
    assert "| greedy:alpha | 25.0 |" in md
    assert "mt: BLEU (13a)" in md
    assert "| qa | adafuse B=1 | 66.7 | 33.3 | 0.0 | 0.0 | 12 |" in md
    assert "## B sweep" in md and "| qa | 75.0 | 100.0 |" in md
    paths = report.write_reports(tmp_path / "out", s)
    page = paths["html"].read_text()
    # self-contained: plotly.js inlined once, no script fetched from anywhere
    assert page.count("<script>/**\n* plotly.js v") == 1
    assert not re.search(r"<script[^>]*\ssrc=", page) and not re.search(r"<link[^>]*\shref=", page)
    for title in ("Score per method and task", "Words per round", "Adaptive rounds vs fixed-length",
                  "B sweep", "Latency per item", "Forward passes per item"):
        assert title in page
    assert json.loads(paths["summary"].read_text())["tasks"]["qa"]["items"] == 4
    assert paths["markdown"].read_text().startswith("# AdaFuse evaluation")


def test_without_plotly_the_html_is_skipped_with_a_message_and_the_rest_is_written(two_tasks, tmp_path,
                                                                                   monkeypatch, capsys):
    task_list, methods, results = two_tasks
    s = report.summarize(task_list, methods, results)
    monkeypatch.setitem(sys.modules, "plotly", None)        # import plotly now fails as if not installed
    paths = report.write_reports(tmp_path / "out", s, "bsweep")
    assert sorted(paths) == ["markdown", "summary"]
    assert not (tmp_path / "out" / "bsweep.html").exists()
    assert json.loads(paths["summary"].read_text())["tasks"]["qa"]["items"] == 4
    assert "| adafuse B=2 | 100.0 |" in paths["markdown"].read_text()
    err = capsys.readouterr().err
    assert "bsweep.html not written: plotly is not installed" in err
    assert f"python -m adafuse eval report --out {tmp_path / 'out'}" in err


def test_an_interrupted_run_is_compared_on_the_items_every_method_finished(two_tasks):
    task_list, methods, results = two_tasks
    results["qa"]["fixed_L2"] = results["qa"]["fixed_L2"][:3]         # killed before its 4th item
    s = report.summarize(task_list, methods, results)
    qa = s["tasks"]["qa"]["methods"]
    assert {c["n"] for c in qa.values()} == {3}
    assert qa["adafuse_tau0.7_M3_B1"]["score"] == 100.0 and qa["adafuse_tau0.7_M3_B2"]["score"] == 100.0
    assert "| adafuse B=1 | 100.0 (n=3) |" in report.markdown(s)
