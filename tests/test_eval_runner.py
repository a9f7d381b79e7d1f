"""The eval runner without models: methods and sweeps, per-item records, resume (also after a
real kill of a running process), malformed result lines, sharding and the merge.

`fake_generate` stands in for adafuse.generate: it answers from the question so the scores are
known in advance, and builds a Trace the way the engine does (one committed span per round).
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adafuse import InputError
from adafuse.eval import report, runner, tasks
from adafuse.trace import Candidate, Proposal, Round, Stats, Trace

MODELS = ["alpha", "beta"]
N_ITEMS = 8


def fake_answer(question: str, mode: str, models) -> str:
    i = int(question[1:])
    if mode == "adafuse":
        return f" a{i}\nQuestion: next"                   # right; the stop string cuts the rest
    if mode == "fixed":
        return f" a{i} extra"                             # EM 0, F1 2/3
    return f" a{i}" if (models[0] == "alpha" and i % 2 == 0) else " wrong"


def fake_generate(models, prompt, cfg, delay: float = 0.0) -> Trace:
    if delay:
        time.sleep(delay)
    question = prompt.rsplit("Question: ", 1)[1].split("\n")[0]
    if question == "q666":
        raise InputError("prompt is longer than the context")
    full = fake_answer(question, cfg.mode, models)
    words = re.findall(r"\s*\S+", full)
    rounds, i = [], 0
    while i < len(words):
        n = cfg.fixed_words if cfg.mode == "fixed" else (2 if i == 0 and len(words) > 1 else 1)
        n = min(n, len(words) - i)
        span = "".join(words[i:i + n])
        cand = Candidate(span, list(models), words=n, nll={m: 0.5 for m in models},
                         tokens={m: n for m in models}, score=0.5)
        props = [Proposal(m, words[i:i + n], [0.9] * n, False, [span]) for m in models]
        rounds.append(Round(len(rounds), props, [cand], 0))
        i += n
    text = full
    for s in cfg.stop:
        text = text.split(s)[0]
    return Trace(prompt, cfg.mode, list(models), cfg.to_dict(), rounds, text,
                 Stats(0.01, {m: 3 * len(rounds) for m in models}, {m: len(words) for m in models}, "stop_string"))


def write_data(path: Path, n: int = N_ITEMS, extra: str = "") -> Path:
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": [f"a{i}"]}) + "\n" for i in range(n)) + extra)
    return path


def make(tmp_path, n=N_ITEMS, methods=("adafuse", "fixed:1", "greedy")):
    task = tasks.load_custom(write_data(tmp_path / "qa.jsonl", n), "em", stop=("\n",))
    return task, runner.parse_methods(methods, MODELS)


def opts(out, **kw):
    return runner.RunOptions(out_dir=out, progress=False, log=lambda m: None, **kw)


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "trace")} for r in records]


# ---------------------------------------------------------------- methods

def test_parse_methods_and_sweeps():
    ms = runner.parse_methods(["adafuse", "fixed:2", "greedy:beta", "greedy"], MODELS,
                              sweeps=["B=1,2", "tau=0.5,0.9"])
    labels = [m.label for m in ms]
    assert labels[:4] == ["adafuse B=1 tau=0.5", "adafuse B=1 tau=0.9", "adafuse B=2 tau=0.5", "adafuse B=2 tau=0.9"]
    assert labels[4:] == ["fixed:2", "greedy:beta", "greedy:alpha"]
    assert [m.branches for m in ms[:4]] == [1, 1, 2, 2] and [m.tau for m in ms[:4]] == [0.5, 0.9, 0.5, 0.9]
    assert ms[0].slug == "adafuse_tau0.5_M3_B1" and ms[4].slug == "fixed_L2" and ms[5].models == ("beta",)
    plain = runner.parse_methods(["adafuse"], MODELS, tau=0.6, max_words=2, branches=3)[0]
    assert (plain.label, plain.tau, plain.max_words, plain.branches) == ("adafuse", 0.6, 2, 3)


@pytest.mark.parametrize("methods, sweeps, message", [
    (["beam"], [], "unknown method"),
    (["fixed"], [], "fixed:L"),
    (["greedy:gamma"], [], "not among --models"),
    (["adafuse"], ["branches"], "bad --sweep"),
    (["adafuse"], ["colour=1,2"], "bad --sweep"),
    (["adafuse"], ["branches=1,x"], "whole number"),
    (["adafuse"], ["tau=0.5,1.5"], "tau"),
    (["adafuse"], ["branches=0"], "branches"),
])
def test_bad_methods_are_refused_clearly(methods, sweeps, message):
    with pytest.raises(InputError, match=message):
        runner.parse_methods(methods, MODELS, sweeps=sweeps)


def test_adafuse_needs_two_models():
    with pytest.raises(InputError, match="two models"):
        runner.parse_methods(["adafuse"], ["alpha"])


# ---------------------------------------------------------------- records and scores

def test_run_writes_one_scored_record_per_item_and_method(tmp_path):
    task, methods = make(tmp_path)
    calls = []
    results = runner.run([task], methods, lambda *a: calls.append(a) or fake_generate(*a), opts(tmp_path / "out"))
    assert len(calls) == N_ITEMS * len(methods)
    for m in methods:
        path = tmp_path / "out" / "custom" / f"{m.slug}.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["line"] for r in recs] == list(range(1, N_ITEMS + 1))
        assert recs == results["custom"][m.slug]
    ada = results["custom"]["adafuse_tau0.7_M3_B1"][3]
    assert ada["prediction"] == " a3" and ada["answer"] == "a3" and ada["metrics"] == {"em": 1.0, "f1": 1.0}
    assert ada["reference"] == ["a3"] and ada["words_per_round"] == [2, 1]   # " a3\nQuestion:", " next"
    assert Trace.from_dict(ada["trace"]).text == " a3"          # the full trace, readable back
    assert ada["forward_passes"] == 2 * 2 * 3                   # 2 models x 2 rounds x 3 passes
    fixed = results["custom"]["fixed_L1"][0]
    assert fixed["metrics"] == {"em": 0.0, "f1": pytest.approx(2 / 3)}
    summary = report.summarize([task], methods, results)
    cells = summary["tasks"]["custom"]["methods"]
    assert cells["adafuse_tau0.7_M3_B1"]["score"] == 100.0
    assert cells["fixed_L1"]["score"] == 0.0 and cells["fixed_L1"]["scores"]["f1"] == pytest.approx(66.67)
    assert cells["greedy_alpha"]["score"] == 50.0 and cells["greedy_beta"]["score"] == 0.0
    assert cells["fixed_L1"]["words_per_round"]["1"] == 100.0


def test_an_item_the_engine_refuses_is_kept_with_its_error(tmp_path):
    path = write_data(tmp_path / "qa.jsonl", 2, extra=json.dumps({"question": "q666", "answer": "x"}) + "\n")
    task = tasks.load_custom(path, "em")
    methods = runner.parse_methods(["greedy:alpha"], MODELS)
    recs = runner.run([task], methods, fake_generate, opts(tmp_path / "out"))["custom"]["greedy_alpha"]
    assert len(recs) == 3 and recs[2]["error"] == "prompt is longer than the context"
    assert recs[2]["prediction"] == "" and recs[2]["metrics"]["em"] == 0.0
    assert report.summarize([task], methods, {"custom": {"greedy_alpha": recs}})["tasks"]["custom"][
        "methods"]["greedy_alpha"]["errors"] == 1


# ---------------------------------------------------------------- resume

def test_a_second_run_needs_resume_and_resume_redoes_nothing(tmp_path):
    task, methods = make(tmp_path)
    first = runner.run([task], methods, fake_generate, opts(tmp_path / "out"))
    with pytest.raises(tasks.EvalDataError, match="--resume"):
        runner.run([task], methods, fake_generate, opts(tmp_path / "out"))
    calls = []
    again = runner.run([task], methods, lambda *a: calls.append(a) or fake_generate(*a),
                       opts(tmp_path / "out", resume=True))
    assert calls == [] and again == first


def test_resume_refuses_results_made_with_other_settings(tmp_path):
    task, methods = make(tmp_path, methods=("greedy:alpha",))
    runner.run([task], methods, fake_generate, opts(tmp_path / "out"))
    other = tasks.load_custom(tmp_path / "qa.jsonl", "em", stop=("\n",), max_new_tokens=7)
    with pytest.raises(tasks.EvalDataError, match="max_new_tokens"):
        runner.run([other], methods, fake_generate, opts(tmp_path / "out", resume=True))


def test_resume_ignores_a_half_written_last_line_and_keeps_the_file_clean(tmp_path):
    task, methods = make(tmp_path, methods=("greedy:alpha",))
    out = tmp_path / "out"
    runner.run([task], methods, fake_generate, opts(out))
    path = out / "custom" / "greedy_alpha.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # As after a kill in the middle of writing item 6: items 6-8 missing, item 6 half written.
    path.write_text("".join(lines[:5]) + lines[5][:40])
    warnings = []
    calls = []
    res = runner.run([task], methods, lambda *a: calls.append(a) or fake_generate(*a),
                     runner.RunOptions(out_dir=out, resume=True, progress=False, log=warnings.append))
    assert len(calls) == 3
    recs = res["custom"]["greedy_alpha"]
    assert [r["line"] for r in recs] == list(range(1, N_ITEMS + 1))
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert not [w for w in warnings if "unreadable" in w]       # a cut last line is expected, not reported


def test_an_unreadable_line_inside_a_result_file_is_reported_and_redone(tmp_path):
    task, methods = make(tmp_path, methods=("greedy:alpha",))
    out = tmp_path / "out"
    runner.run([task], methods, fake_generate, opts(out))
    path = out / "custom" / "greedy_alpha.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "{garbage\n"
    path.write_text("".join(lines))
    warnings = []
    res = runner.run([task], methods, fake_generate,
                     runner.RunOptions(out_dir=out, resume=True, progress=False, log=warnings.append))
    assert any("greedy_alpha.jsonl:3" in w for w in warnings)
    assert [r["line"] for r in res["custom"]["greedy_alpha"]] == list(range(1, N_ITEMS + 1))


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import test_eval_runner as t
import adafuse.eval.cli as cli
cli._engine = lambda names, args, device: ((lambda m, p, c: t.fake_generate(m, p, c, delay={delay})), [])
sys.exit(cli.main(sys.argv[1:]))
"""


def run_cli(tmp_path, args, delay=0.0):
    script = tmp_path / "run_eval.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent), delay=delay))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script), *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_after_killing_a_running_eval_loses_and_duplicates_nothing(tmp_path):
    data = write_data(tmp_path / "qa.jsonl", 12)
    out = tmp_path / "out"
    args = ["--task", "custom", "--data", str(data), "--metric", "em", "--models", "alpha,beta",
            "--methods", "adafuse,greedy:alpha", "--out", str(out), "--no-progress"]
    proc = run_cli(tmp_path, args, delay=0.15)
    files = [out / "custom" / "adafuse_tau0.7_M3_B1.jsonl", out / "custom" / "greedy_alpha.jsonl"]
    deadline = time.time() + 60
    while time.time() < deadline:
        done = sum(len(f.read_text().splitlines()) for f in files if f.exists())
        if done >= 5 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = {f.name: [json.loads(x) for x in f.read_text().splitlines() if x.endswith("}")]
              for f in files if f.exists()}
    finished = sum(len(v) for v in before.values())
    assert 5 <= finished < 24

    proc = run_cli(tmp_path, args + ["--resume"])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"resuming: {finished} finished" in stderr
    for f in files:
        recs = [json.loads(x) for x in f.read_text().splitlines()]
        assert [r["line"] for r in recs] == list(range(1, 13))          # none lost, none twice
        # what was finished before the kill is kept as it was, not redone
        assert recs[: len(before.get(f.name, []))] == before.get(f.name, [])
    summary = json.loads((out / "summary.json").read_text())
    cells = summary["tasks"]["custom"]["methods"]
    assert cells["adafuse_tau0.7_M3_B1"]["n"] == 12 and cells["adafuse_tau0.7_M3_B1"]["score"] == 100.0
    assert cells["greedy_alpha"]["score"] == 50.0
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert len(json.loads((out / "run.json").read_text())["invocations"]) == 2


def test_cli_refuses_to_overwrite_and_reports_clear_errors(tmp_path, capsys):
    from adafuse.eval import cli

    data = write_data(tmp_path / "qa.jsonl", 2)
    assert cli.main(["--task", "custom", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "--metric" in capsys.readouterr().err
    assert cli.main(["--task", "nq", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "benchmark directory not found" in capsys.readouterr().err
    assert cli.main(["--task", "custom", "--data", str(data), "--metric", "em", "--models", "alpha,beta",
                     "--methods", "beam", "--out", str(tmp_path / "o")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cli.main(["--task", "custom", "--data", str(data), "--metric", "em", "--models", "alpha,beta",
                     "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert cli.main(["--task", "custom", "--data", str(data), "--metric", "em", "--models", "alpha,beta",
                     "--out", str(tmp_path / "o"), "--show-prompt"]) == 0
    assert "Question: q0\nAnswer:" in capsys.readouterr().out


# ---------------------------------------------------------------- sharding

def test_sharded_run_merges_to_the_same_files_as_one_process(tmp_path):
    task, methods = make(tmp_path, n=9)
    single = runner.run([task], methods, fake_generate, opts(tmp_path / "one"))

    world = 3
    barrier = threading.Barrier(world)
    out = tmp_path / "many"
    results, errors = {}, []

    def worker(rank):
        try:
            results[rank] = runner.run([task], methods, fake_generate,
                                       opts(out, rank=rank, world=world, barrier=barrier.wait))
        except Exception as e:          # noqa: BLE001  (reported below)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for rank in range(world):
        assert strip_timing(results[rank]["custom"]["greedy_beta"]) == strip_timing(single["custom"]["greedy_beta"])
    for m in methods:
        merged = [json.loads(x) for x in (out / "custom" / f"{m.slug}.jsonl").read_text().splitlines()]
        assert strip_timing(merged) == strip_timing(single["custom"][m.slug])
    assert sorted(p.name for p in (out / "custom").iterdir()) == sorted(f"{m.slug}.jsonl" for m in methods)


def test_resume_after_a_sharded_run_was_cut_off(tmp_path):
    """Rank files left by a killed multi-process run are read back by a single-process resume."""
    task, methods = make(tmp_path, methods=("greedy:alpha",))
    out = tmp_path / "out"
    m = methods[0]
    (out / "custom").mkdir(parents=True)
    single = runner.run([task], methods, fake_generate, opts(tmp_path / "ref"))["custom"][m.slug]
    for rank in (0, 1):
        with open(runner.method_file(out, "custom", m, rank), "w") as f:
            for r in single[rank:4:2]:
                f.write(json.dumps(r) + "\n")
    calls = []
    res = runner.run([task], methods, lambda *a: calls.append(a) or fake_generate(*a), opts(out, resume=True))
    assert len(calls) == N_ITEMS - 4
    assert [r["line"] for r in res["custom"][m.slug]] == list(range(1, N_ITEMS + 1))
    assert sorted(p.name for p in (out / "custom").iterdir()) == [f"{m.slug}.jsonl"]


def test_report_subcommand_rebuilds_the_reports_without_models(tmp_path, monkeypatch, capsys):
    from adafuse.eval import cli

    data = write_data(tmp_path / "qa.jsonl", 4)
    out = tmp_path / "out"
    monkeypatch.setattr(cli, "_engine", lambda names, args, device: (fake_generate, []))
    assert cli.main(["--task", "custom", "--data", str(data), "--metric", "em", "--stop", "\\n",
                     "--models", "alpha,beta", "--methods", "adafuse,greedy", "--out", str(out), "--no-progress"]) == 0
    first = json.loads((out / "summary.json").read_text())
    (out / "summary.json").unlink()
    monkeypatch.setattr(cli, "_engine", None)            # the report needs no engine
    assert cli.main(["report", "--out", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["tasks"] == first["tasks"]
    assert again["tasks"]["custom"]["methods"]["greedy_alpha"]["score"] == 50.0
    assert "| adafuse | 100.0 |" in capsys.readouterr().out
    assert cli.main(["report", "--out", str(tmp_path / "nothing")]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_report_subcommand_rebuilds_every_report_of_a_shared_out_dir(tmp_path, monkeypatch):
    """A sweep resumed into the main run's folder keeps its own report; `report` rebuilds both,
    each from the latest invocation that wrote it."""
    from adafuse.eval import cli

    data = write_data(tmp_path / "qa.jsonl", 4)
    out = tmp_path / "out"
    base = ["--task", "custom", "--data", str(data), "--metric", "em", "--stop", "\\n", "--models", "alpha,beta",
            "--out", str(out), "--no-progress"]
    monkeypatch.setattr(cli, "_engine", lambda names, args, device: (fake_generate, []))
    assert cli.main(base + ["--methods", "greedy", "--limit", "2"]) == 0
    assert cli.main(base + ["--methods", "greedy", "--resume"]) == 0
    assert cli.main(base + ["--methods", "adafuse", "--sweep", "B=1,2", "--report-name", "bsweep", "--resume"]) == 0
    made = {name: json.loads((out / name).read_text())["tasks"] for name in ("summary.json", "bsweep.summary.json")}
    for name in made:
        (out / name).unlink()
    monkeypatch.setattr(cli, "_engine", None)
    assert cli.main(["report", "--out", str(out)]) == 0
    for name, tasks_made in made.items():
        assert json.loads((out / name).read_text())["tasks"] == tasks_made
    assert sorted(json.loads((out / "summary.json").read_text())["tasks"]["custom"]["methods"]) == \
        ["greedy_alpha", "greedy_beta"]
    assert json.loads((out / "summary.json").read_text())["tasks"]["custom"]["methods"]["greedy_alpha"]["n"] == 4


def test_cli_reads_escaped_newlines_in_stop_strings_and_keeps_other_text(tmp_path):
    from adafuse.eval import cli

    data = write_data(tmp_path / "qa.jsonl", 1)
    args = cli.build_parser().parse_args(["--task", "custom", "--data", str(data), "--metric", "em", "--out", "o",
                                          "--stop", "\\n", "--stop", "„Frage:", "--limit", "1"])
    assert cli.load_tasks(args)[0].spec.stop == ("\n", "„Frage:")
