"""Opening evaluation results for case inspection: a run made by the harness on the real pair,
read back field by field and trace by trace; a large run opens without parsing its traces;
malformed and foreign files get a message that names the problem."""
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from cases_run import ADAFUSE, records  # noqa: E402

from adafuse.cases import CasesError, Query, load_trace, open_cases, select  # noqa: E402
from adafuse.cases import load as load_mod  # noqa: E402
from adafuse.trace import Trace  # noqa: E402


@pytest.fixture(scope="module")
def names(lms):
    return [lm.name for lm in lms]


def closest_margin(trace: Trace):
    """The fused-score gap between the best two candidates, smallest over the rounds that reached
    the output: computed here from the Trace objects, independently of the loader."""
    gaps, used = [], 0
    for r in trace.rounds:
        if used >= len(trace.text):
            break
        used += len(r.chosen[: len(trace.text) - used])
        scores = sorted(c.score for c in r.candidates)
        if len(scores) > 1:
            gaps.append((scores[1] - scores[0], r.index))
    return min(gaps) if gaps else (None, None)


def test_a_run_reads_back_as_written(run_dir, names):
    run = open_cases([run_dir])
    slugs = [ADAFUSE] + [f"greedy_{n}" for n in names]
    assert list(run.methods) == slugs                         # ensemble first, singles in model order
    assert run.singles() == slugs[1:] and run.default_focus() == ADAFUSE and run.tasks == ["custom"]
    assert [c.line for c in run.cases] == [1, 2, 3] and run.warnings == []
    assert run.methods[ADAFUSE].models == tuple(names) and run.methods[slugs[1]].mode == "greedy"
    infos = run.trace_info(ADAFUSE)
    for slug in slugs:
        for case, rec in zip(run.cases, records(run_dir, slug)):
            r = case.results[slug]
            assert (case.key, case.question, case.references, case.metric) == (
                rec["key"], rec["question"], rec["reference"], "em")
            assert (r.prediction, r.answer, r.metrics, r.error) == (rec["prediction"], rec["answer"],
                                                                    rec["metrics"], None)
            assert r.rounds == len(rec["words_per_round"]) >= 1
            trace = load_trace(case, slug)
            assert trace.to_dict() == Trace.from_dict(rec["trace"]).to_dict()
            if slug == ADAFUSE:
                info = infos[case.index]
                assert info.rounds == len(trace.rounds)
                assert info.branched == sum(rnd.branched for rnd in trace.rounds)
                margin, at = closest_margin(trace)
                assert (info.margin_round == at) and (margin is None or math.isclose(info.margin, margin))
    # the items were chosen so that the two models answer differently
    alone = [records(run_dir, s) for s in slugs[1:]]
    assert any(a["answer"] != b["answer"] for a, b in zip(*alone))


def test_opening_parses_no_trace(run_dir, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a trace was parsed while opening")
    monkeypatch.setattr(load_mod.Trace, "from_dict", boom)
    monkeypatch.setattr(load_mod, "summarize_trace", boom)
    run = open_cases([run_dir])
    assert len(run.cases) == 3 and run._infos == {}
    assert all(not hasattr(r, "trace") for c in run.cases for r in c.results.values())


def test_a_large_run_opens_in_seconds_and_pages(run_dir, tmp_path):
    """2,000 items x 3 methods with decode-length traces (~60 MB): open, filter one page, show one."""
    n = 2000
    src = [records(run_dir, f.stem) for f in sorted((run_dir / "custom").glob("*.jsonl"))]
    big = tmp_path / "big" / "custom"
    big.mkdir(parents=True)
    for recs in src:
        with open(big / f"{recs[0]['slug']}.jsonl", "w") as f:
            for i in range(n):
                rec = dict(recs[i % 3], key=f"{i + 1}:big", line=i + 1, question=f"#{i} {recs[i % 3]['question']}")
                trace = dict(rec["trace"])
                trace["rounds"] = trace["rounds"] * 12        # a long decode: ~12x the rounds
                rec["trace"] = trace
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in big.iterdir())
    t0 = time.perf_counter()
    run = open_cases([big.parent])
    opened = time.perf_counter() - t0
    rows = select(run, Query(outcomes=("branched",), sort="margin"))
    listed = time.perf_counter() - t0
    case = run.cases[1500]
    trace = load_trace(case, ADAFUSE)
    print(f"\n{size / 1e6:.0f} MB: opened in {opened:.2f} s, filtered and sorted by margin in {listed - opened:.2f} s")
    assert len(run.cases) == n and size > 30e6
    assert opened < 5 and listed < 10
    assert case.key == "1501:big" and case.question.startswith("#1500 ")
    assert trace.text == case.results[ADAFUSE].prediction and len(trace.rounds) % 12 == 0
    assert all(c.results[ADAFUSE].where.length < 200_000 for c, _ in rows[:20])


# ---- files that are not what they should be ---------------------------------------------------

def write(path: Path, text, binary=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if binary else path.write_text)(text)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no such file or folder"),
    (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "holds no evaluation results"),
    (lambda d: write(d / "e.jsonl", "\n\n"), "is empty"),
    (lambda d: write(d / "b.jsonl", b"\x89PNG\r\n\x1a\n\0\0\0", True), "not a text file"),
    (lambda d: write(d / "items.jsonl", '{"question": "q", "answer": "a"}\n'), "holds task items"),
    (lambda d: write(d / "other.jsonl", '{"id": 1, "text": "hello"}\n'), "neither an evaluation result nor a trace"),
    (lambda d: write(d / "broken.json", '{"rounds": [1, 2'), "neither JSON nor JSONL"),
    (lambda d: write(d / "latin1.json", "{\"a\": \"\xe9\"}".encode("latin-1"), True), "not UTF-8"),
    (lambda d: write(d / "nometrics.jsonl", '{"key": "1:a", "task": "nq", "method": "adafuse", "prediction": "x"}\n'),
     "no line is an evaluation result"),
    (lambda d: write(d / "t.json", '{"mode": "adafuse", "models": ["a"], "text": "x", "rounds": [{"index": 0}]}'),
     "looks like a trace but is incomplete"),
])
def test_malformed_input_names_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CasesError, match=message) as e:
        open_cases([path])
    assert path.name in str(e.value)


def test_bad_lines_are_skipped_with_a_warning_and_a_cut_last_line_silently(run_dir, tmp_path):
    lines = (run_dir / "custom" / f"{ADAFUSE}.jsonl").read_text().splitlines()
    path = write(tmp_path / "custom" / "adafuse.jsonl",
                 lines[0] + "\nnot json at all\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    run = open_cases([path])
    assert [c.line for c in run.cases] == [1, 2]
    assert run.warnings == ["adafuse.jsonl:2: not valid JSON; skipped"]


def test_one_uploaded_method_file_and_one_exported_trace(run_dir, tmp_path):
    one = open_cases([run_dir / "custom" / f"{ADAFUSE}.jsonl"])
    assert list(one.methods) == [ADAFUSE] and one.singles() == [] and len(one.cases) == 3
    rec = records(run_dir, ADAFUSE)[1]
    exported = write(tmp_path / "trace.json", Trace.from_dict(rec["trace"]).to_json(indent=1))
    run = open_cases([exported])
    (case,) = run.cases
    assert run.default_focus() == "trace_adafuse" and case.question == f"Question: {rec['question']} Answer:"
    assert load_trace(case, "trace_adafuse").to_dict() == Trace.from_dict(rec["trace"]).to_dict()
    assert case.results["trace_adafuse"].prediction == rec["prediction"]


def test_run_json_opens_its_run_and_rank_files_do_not_double(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.copy(copy / "custom" / f"{ADAFUSE}.jsonl", copy / "custom" / f"{ADAFUSE}.rank0.jsonl")
    run = open_cases([copy / "run.json"])
    assert len(run.cases) == 3 and len(run.methods) == 3
    assert run.warnings == ["3 duplicate results ignored (the first one is kept)"]


def test_a_file_rewritten_after_opening_is_reported_not_misread(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run = open_cases([copy])
    path = copy / "custom" / f"{ADAFUSE}.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")       # same bytes, other order
    with pytest.raises(CasesError, match="changed since it was opened"):
        load_trace(run.cases[0], ADAFUSE)
    path.unlink()
    with pytest.raises(CasesError, match="cannot read"):
        load_trace(run.cases[0], ADAFUSE)
