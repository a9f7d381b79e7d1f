"""`python -m adafuse eval merge`: results computed on another machine brought into a run, on the
records of a real eval run of the embedded pair (tests/cases_run.py): three items, AdaFuse and
each model alone."""
import json
import shutil

import pytest

from adafuse.eval import cli, merge
from adafuse.eval.tasks import EvalDataError

SLUGS = ["adafuse_tau0.7_M3_B1", "greedy_smollm2-135m-instruct", "greedy_gemma3-270m"]


def lines(run, slug):
    return (run / "custom" / f"{slug}.jsonl").read_text().splitlines()


def keep_lines(run, slug, keep):
    """Leave only the records of these item lines in `run`'s file of `slug`."""
    path = run / "custom" / f"{slug}.jsonl"
    path.write_text("".join(x + "\n" for x in path.read_text().splitlines() if json.loads(x)["line"] in keep))


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture
def here_and_there(run_dir, tmp_path):
    """Two copies of the real run: `here` finished item 1 only, `there` (another machine) all three."""
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(run_dir, here)
    shutil.copytree(run_dir, there)
    for slug in SLUGS:
        keep_lines(here, slug, {1})
    return here, there


def test_merge_adds_the_missing_items_marked_with_where_they_ran(here_and_there, run_dir, capsys):
    here, there = here_and_there
    mine = {slug: lines(here, slug) for slug in SLUGS}
    info = json.loads((there / "run.json").read_text())       # the resume that finished it there
    info["invocations"].append({**info["invocations"][0], "command": info["invocations"][0]["command"] + " --resume",
                                "started": "2026-11-29T04:17:00Z"})
    (there / "run.json").write_text(json.dumps(info))
    assert cli.main(["merge", "--out", str(here), "--from", str(there), "--computed-on", "cpu (the other box)"]) == 0
    out = capsys.readouterr()
    assert "| custom | adafuse_tau0.7_M3_B1 | 1 | 2 | 0 |" in out.out
    assert f"eval report --out {here}" in out.err
    for slug in SLUGS:
        merged = [json.loads(x) for x in lines(here, slug)]
        original = [json.loads(x) for x in lines(run_dir, slug)]
        assert [r["line"] for r in merged] == [1, 2, 3]
        assert lines(here, slug)[0] == mine[slug][0]                       # its own record, byte for byte
        assert "computed_on" not in merged[0]
        for got, want in zip(merged[1:], original[1:]):
            assert got.pop("computed_on") == "cpu (the other box)"
            assert got == want                                             # otherwise the record as made there
    info = json.loads((here / "run.json").read_text())
    assert info["merges"][0]["added"] == 2 * len(SLUGS) and info["merges"][0]["replaced"] == 0
    assert info["merges"][0]["computed_on"] == "cpu (the other box)"
    assert len(info["invocations"]) == 2 and "note" not in info["invocations"][0]
    assert info["invocations"][1]["note"] == f"merged from {there} by `eval merge`; ran on cpu (the other box)"

    # the reports count every item; seconds only of the records timed by this run
    assert cli.main(["report", "--out", str(here)]) == 0
    summary = json.loads((here / "summary.json").read_text())
    for slug in SLUGS:
        cell = summary["tasks"]["custom"]["methods"][slug]
        first = json.loads(mine[slug][0])
        assert cell["n"] == 3 and cell["computed_on"] == {"cpu (the other box)": 2}
        assert cell["seconds_mean"] == round(first["seconds"], 3)
    # the scores are those of the run made in one piece
    assert {s: c["score"] for s, c in summary["tasks"]["custom"]["methods"].items()} == {
        s: c["score"] for s, c in json.loads((run_dir / "summary.json").read_text())["tasks"]["custom"]["methods"].items()}
    md = (here / "report.md").read_text()
    assert "† Seconds over the results this run timed; merged in and timed elsewhere: custom, 6 on cpu (the other box)." in md


def test_merge_replaces_only_the_records_from_the_place_named(here_and_there, run_dir):
    here, there = here_and_there
    shutil.rmtree(here)
    shutil.copytree(run_dir, here)
    # items 2 and 3 of `here` were made on a GPU (and say something else); item 1 here
    for slug in SLUGS:
        path = here / "custom" / f"{slug}.jsonl"
        recs = [json.loads(x) for x in path.read_text().splitlines()]
        for r in recs[1:]:
            r["computed_on"], r["prediction"] = "cuda (one H200)", "from the GPU"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    counts = merge.merge_run(here, there, "cpu (16 cores)", replace="cuda")
    assert {k: (c.kept, c.added, c.replaced) for k, c in counts.items()} == {("custom", s): (1, 0, 2) for s in SLUGS}
    for slug in SLUGS:
        merged = [json.loads(x) for x in lines(here, slug)]
        assert [r.get("computed_on") for r in merged] == [None, "cpu (16 cores)", "cpu (16 cores)"]
        assert [r["prediction"] for r in merged] == [json.loads(x)["prediction"] for x in lines(run_dir, slug)]
    # merging again changes nothing: the CPU records stay
    before = snapshot(here)
    counts = merge.merge_run(here, there, "cpu (16 cores)", replace="cuda")
    assert all((c.kept, c.added, c.replaced) == (3, 0, 0) for c in counts.values())
    assert snapshot(here) == before
    # without replace, a record from elsewhere is kept too
    assert all(c.replaced == 0 for c in merge.merge_run(here, there).values())


def test_merge_refuses_other_settings_and_unfinished_runs_and_writes_nothing(here_and_there, capsys):
    here, there = here_and_there
    path = there / "custom" / "greedy_gemma3-270m.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    recs[2]["fingerprint"]["max_new_tokens"] = 64
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    before = snapshot(here)
    assert cli.main(["merge", "--out", str(here), "--from", str(there)]) == 2
    err = capsys.readouterr().err
    assert "greedy_gemma3-270m.jsonl: the records to merge were made with other settings (max_new_tokens: 6 vs 64)" in err
    assert snapshot(here) == before            # the methods checked before it were not written either

    shutil.copy(here / "custom" / "greedy_gemma3-270m.jsonl", here / "custom" / "greedy_gemma3-270m.rank1.jsonl")
    with pytest.raises(EvalDataError, match="unfinished sharded run; resume it"):
        merge.merge_run(here, there)
    with pytest.raises(EvalDataError, match="holds no run"):
        merge.merge_run(here, there / "custom")
    with pytest.raises(EvalDataError, match="into itself"):
        merge.merge_run(here, here)
