"""Finding the cases that matter: outcome filters, task, search, sorting and paging, on the run the
harness made with the real pair (expected sets computed here from the raw records) and on copies
of it whose answers and scores are set to known values."""
import copy
import json
from pathlib import Path

import pytest

from cases_run import ADAFUSE, records  # noqa: E402
from test_cases_load import closest_margin  # noqa: E402

from adafuse.cases import CasesError, Query, open_cases, page, select  # noqa: E402
from adafuse.eval.metrics import normalize_answer  # noqa: E402
from adafuse.trace import Trace  # noqa: E402


@pytest.fixture(scope="module")
def singles(lms):
    return [f"greedy_{lm.name}" for lm in lms]


def names(rows):
    return [c.name for c, _ in rows]


def test_filters_on_the_real_run_match_the_records(run_dir, singles):
    run = open_cases([run_dir])
    ada = records(run_dir, ADAFUSE)
    alone = [records(run_dir, s) for s in singles]
    expect = {"wins": [], "losses": [], "disagree": [], "branched": [], "errors": []}
    for i, rec in enumerate(ada):
        mine, others = rec["metrics"]["em"], [a[i]["metrics"]["em"] for a in alone]
        name = f"custom:{rec['line']}"
        if mine == 1 and not any(others):
            expect["wins"].append(name)
        if mine == 0 and any(others):
            expect["losses"].append(name)
        if len({normalize_answer(r["answer"]) for r in [rec] + [a[i] for a in alone]}) > 1:
            expect["disagree"].append(name)
        if any(p["branched"] for r in rec["trace"]["rounds"] for p in r["proposals"]):
            expect["branched"].append(name)
    assert expect["disagree"] and expect["branched"]          # the data exercise the filters
    for outcome, want in expect.items():
        assert names(select(run, Query(outcomes=(outcome,)))) == want, outcome
    both = [n for n in expect["disagree"] if n in expect["branched"]]
    assert names(select(run, Query(outcomes=("disagree", "branched")))) == both


def test_sorting_by_margin_and_rounds_on_the_real_run(run_dir):
    run = open_cases([run_dir])
    traces = {f"custom:{r['line']}": Trace.from_dict(r["trace"]) for r in records(run_dir, ADAFUSE)}
    margins = {n: closest_margin(t)[0] for n, t in traces.items()}
    by_margin = sorted((n for n in margins if margins[n] is not None), key=margins.get)
    by_margin += [n for n in margins if margins[n] is None]
    assert names(select(run, Query(sort="margin"))) == by_margin
    rows = select(run, Query(sort="rounds"))
    assert [len(traces[n].rounds) for n in names(rows)] == sorted((len(t.rounds) for t in traces.values()),
                                                                   reverse=True)
    assert [v.info.rounds for _, v in rows] == [len(traces[n].rounds) for n in names(rows)]
    assert names(select(run, Query(sort="order", reverse=True))) == ["custom:3", "custom:2", "custom:1"]


def test_search_is_every_word_anywhere_case_insensitive(run_dir):
    run = open_cases([run_dir])
    assert names(select(run, Query(search="TIMBUKTU"))) == ["custom:2"]
    assert names(select(run, Query(search="red planet"))) == ["custom:1"]
    assert names(select(run, Query(search="planet timbuktu"))) == []
    assert names(select(run, Query(search="ottawa"))) == ["custom:3"]                 # a reference
    word = records(run_dir, ADAFUSE)[1]["prediction"].split()[0]
    assert "custom:2" in names(select(run, Query(search=word)))                       # an answer


# ---- outcome semantics on known scores ---------------------------------------------------------

def derived(run_dir, out: Path, singles, rows, metric="em", task_of=None) -> Path:
    """A copy of the real run with each item's (answer, score) per method set from `rows`:
    rows[i] = (adafuse, single 1, single 2), each (answer, score) or "error"."""
    for slug_i, slug in enumerate([ADAFUSE] + singles):
        for rec, row in zip(records(run_dir, slug), rows):
            rec = copy.deepcopy(rec)
            task = (task_of or {}).get(rec["line"], "custom")
            rec["task"] = task
            value = row[slug_i]
            if value == "error":
                rec.update(error="prompt too long", prediction="", answer="", trace=None)
                value = ("", 0.0)
            rec["answer"] = rec["prediction"] = value[0]
            if metric == "em":
                rec["metrics"] = {"em": value[1], "f1": value[1]}
            else:
                rec["fingerprint"]["metric"] = "bleu"
                rec["metrics"] = {"chrf": value[1], "bleu": value[1] / 2}
            path = out / task / f"{slug}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return out


def test_right_wrong_outcomes(run_dir, singles, tmp_path):
    rows = [(("Mars", 1.0), ("Earth", 0.0), ("Venus", 0.0)),           # AdaFuse alone right: a win
            (("Morocco", 0.0), ("Mali", 1.0), ("Morocco", 0.0)),       # a single right: a loss
            (("Toronto", 0.0), ("toronto.", 0.0), "error")]            # same answer (normalised); one failed
    run = open_cases([derived(run_dir, tmp_path, singles, rows)])
    assert names(select(run, Query(outcomes=("wins",)))) == ["custom:1"]
    assert names(select(run, Query(outcomes=("losses",)))) == ["custom:2"]
    assert names(select(run, Query(outcomes=("errors",)))) == ["custom:3"]
    assert names(select(run, Query(outcomes=("disagree",)))) == ["custom:1", "custom:2", "custom:3"]
    gains = {c.name: v.gain for c, v in select(run, Query(sort="gain"))}
    assert gains == {"custom:1": 1.0, "custom:3": 0.0, "custom:2": -1.0}
    assert list(gains) == ["custom:1", "custom:3", "custom:2"]
    # another per-item metric, and another method inspected: a single model against the rest
    assert names(select(run, Query(outcomes=("wins",), metric="f1"))) == ["custom:1"]
    assert names(select(run, Query(outcomes=("wins",), focus=f"greedy:{singles[0][7:]}"))) == ["custom:2"]


def test_graded_outcomes_compare_with_the_best_single_model(run_dir, singles, tmp_path):
    rows = [(("a", 60.0), ("b", 40.0), ("c", 50.0)),
            (("a", 45.0), ("b", 50.0), ("c", 20.0)),
            (("a", 50.0), ("a", 50.0), ("c", 10.0))]
    run = open_cases([derived(run_dir, tmp_path, singles, rows, metric="chrf")])
    assert run.cases[0].metric == "chrf"
    assert names(select(run, Query(outcomes=("wins",)))) == ["custom:1"]
    assert names(select(run, Query(outcomes=("losses",)))) == ["custom:2"]
    assert [v.gain for _, v in select(run, Query())] == [10.0, -5.0, 0.0]


def test_task_filter_and_paging(run_dir, singles, tmp_path):
    rows = [(("x", 0.0),) * 3] * 3
    run = open_cases([derived(run_dir, tmp_path, singles, rows, task_of={3: "other"})])
    assert run.tasks == ["custom", "other"]
    assert names(select(run, Query(task="other"))) == ["other:3"]
    with pytest.raises(CasesError, match="no task 'nq'.*custom, other"):
        select(run, Query(task="nq"))
    with pytest.raises(CasesError, match="unknown filter 'win'"):
        select(run, Query(outcomes=("win",)))
    with pytest.raises(CasesError, match="no method 'adafuse B=9'"):
        select(run, Query(focus="adafuse B=9"))
    items = list(range(45))
    assert page(items, 3, 20) == (items[40:], 3, 3)
    assert page(items, 9, 20) == (items[40:], 3, 3) and page(items, 0, 20) == (items[:20], 1, 3)
    assert page([], 1, 20) == ([], 1, 1)
