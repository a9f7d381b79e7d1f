"""`python -m adafuse cases` on the run the harness made with the real pair: the listing, the
Markdown and HTML reports (each case's trace round by round), errors; and the gallery script."""
import html
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cases_run import ADAFUSE, records  # noqa: E402

from adafuse import cli  # noqa: E402
from adafuse.cases import Query, load_trace, open_cases, select  # noqa: E402
from adafuse.cases.gallery import KINDS, kind_of, note  # noqa: E402
from adafuse.cases.report import contested  # noqa: E402
from adafuse.cases.select import verdict  # noqa: E402
from adafuse.trace import Trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cases(argv, capsys):
    rc = cli.main(["cases"] + [str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_listing_and_markdown_report(run_dir, tmp_path, capsys):
    run = open_cases([run_dir])
    want = select(run, Query(outcomes=("branched",), sort="margin"))
    report = tmp_path / "cases.md"
    rc, out, err = cases([run_dir, "--filter", "branched", "--sort", "margin", "--report", report], capsys)
    assert rc == 0 and f"wrote {report} ({len(want)} items)" in err
    assert out.startswith(f"{len(want)} of 3 items match · filters: branched · sort: margin · inspecting adafuse")
    blocks = [b for b in out.split("\n\n")[1:] if b.strip()]
    assert [b.split()[0] for b in blocks] == [c.name for c, _ in want]
    ada = {f"custom:{r['line']}": r for r in records(run_dir, ADAFUSE)}
    md = report.read_text()
    for case, v in want:
        trace = Trace.from_dict(ada[case.name]["trace"])
        assert f"{case.name}: {case.question}" in md
        assert trace.bracketed() in md                                  # the output, one bracket per round
        block = blocks[[c.name for c, _ in want].index(case.name)]
        rounds = f"{v.info.rounds} round" + ("" if v.info.rounds == 1 else "s")
        assert f"{rounds}, {v.info.branched} branched" in block
        if v.info.margin is not None:                                    # rounds shown counted from 1
            assert f"(round {v.info.margin_round + 1})" in block
        for rnd in contested(trace):                                     # every contested round's winner
            c = rnd.candidates[rnd.chosen_index]
            assert f"| {rnd.index + 1} | ✓ | `{repr(c.text)[1:-1]}` |" in md


def test_html_report_limit_and_another_method(run_dir, tmp_path, capsys):
    page = tmp_path / "r.html"
    rc, out, err = cases([run_dir, "--search", "timbuktu", "--report", page], capsys)
    assert rc == 0 and out.startswith("1 of 3 items match")
    text = page.read_text()
    trace = load_trace(open_cases([run_dir]).cases[1], ADAFUSE)
    assert text.startswith("<!doctype html>") and ".af-span" in text                # styles inlined
    assert text.count('data-round=') == len([s for s in trace.spans() if s.strip()])
    assert html.escape(trace.spans()[0].strip()) in text
    rc, out, _ = cases([run_dir, "--limit", "1", "--method", "greedy:gemma3-270m"], capsys)
    assert rc == 0 and "inspecting greedy:gemma3-270m" in out and out.rstrip().endswith("... 2 more (raise --limit)")


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "no such file or folder"),
    (["{run}", "--filter", "wins,branchd"], "unknown filter 'branchd'"),
    (["{run}", "--report", "cases.pdf"], "must end in .md or .html"),
    (["{run}", "--task", "nq"], "no task 'nq'"),
])
def test_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / "nope", run=run_dir) for a in argv]
    rc, out, err = cases(argv, capsys)
    assert rc == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_the_module_entry_point(run_dir):
    p = subprocess.run([sys.executable, "-m", "adafuse", "cases", str(run_dir), "--filter", "disagree"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "items match · filters: disagree" in p.stdout


# ---- the gallery -----------------------------------------------------------------------------------

def test_the_gallery_script_on_a_run(run_dir, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_gallery

    out = tmp_path / "gallery"
    assert make_gallery.main([str(run_dir), "--out", str(out), "--per-task", "3"]) == 0
    notes = json.loads((out / "notes.json").read_text())
    gallery, source = open_cases([out]), open_cases([run_dir])
    assert [c.key for c in gallery.cases] == [n["key"] for n in notes["cases"]] and notes["cases"]
    assert notes["made_with"].startswith("python scripts/make_gallery.py ")
    focus = source.default_focus()
    infos = source.trace_info(focus)
    for case, n in zip(gallery.cases, notes["cases"]):
        original = next(c for c in source.cases if c.key == case.key)
        v = verdict(original, focus, source.singles(), infos[original.index])
        assert n["kind"] in kind_of(original, v, source, focus) and case.note == n["note"] != ""
        kept = load_trace(case, focus).to_dict()
        full = load_trace(original, focus).to_dict()
        assert kept["text"] == full["text"] and kept["rounds"][0]["candidates"][0]["token_ids"] == {}
        assert [c["score"] for r in kept["rounds"] for c in r["candidates"]] == \
               [c["score"] for r in full["rounds"] for c in r["candidates"]]
        assert {s: r.answer for s, r in case.results.items()} == {s: r.answer for s, r in original.results.items()}
        assert all(r.where is None for s, r in case.results.items() if s != focus)       # only AdaFuse's trace
        assert infos[original.index].rounds == len(kept["rounds"])


def test_the_shipped_gallery(capsys):
    """What a first-time visitor sees: curated cases from the project's runs, each with a note, a
    trace, and the kind it was picked for still true of its data."""
    gallery_dir = ROOT / "assets" / "gallery"
    run = open_cases([gallery_dir])
    notes = json.loads((gallery_dir / "notes.json").read_text())
    assert run.warnings == [] and len(run.cases) >= 6 and len(run.tasks) >= 4
    assert set(notes["models"]) == {"smollm2-135m-instruct", "gemma3-270m"}
    assert sum(p.stat().st_size for p in gallery_dir.rglob("*") if p.is_file()) < 1_000_000
    focus = run.default_focus()
    kinds = []
    for case, n in zip(run.cases, notes["cases"]):
        v = verdict(case, focus, run.singles(), run.trace_info(focus)[case.index])
        assert n["kind"] in kind_of(case, v, run, focus), case.name
        assert case.note and load_trace(case, focus).text == case.results[focus].prediction
        assert case.note == note(run, case, n["kind"], focus)       # as made now: rounds counted from 1
        kinds.append(n["kind"])
    assert kinds == sorted(kinds, key=list(KINDS).index) and len(set(kinds)) >= 3
