"""Print the Markdown tables of docs/RESULTS.md from the runs of scripts/eval_results.sh.

    python scripts/eval_results_md.py [runs/results]

Reads <root>/<task>/summary.json (the main methods), <root>/<task>/bsweep.summary.json (the B
sweep) and <root>/walltimes.tsv (one line per step: name, dir, seconds, command).
"""
from __future__ import annotations

import csv
import functools
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adafuse.eval import runner  # noqa: E402
from adafuse.eval.metrics import normalize_answer  # noqa: E402

TASKS = ["nq", "triviaqa", "squad", "gsm8k", "flores-de-en", "flores-en-de"]


def load(root: Path, name: str) -> dict[str, dict]:
    out = {}
    for task in TASKS:
        path = root / task / name
        if path.exists():
            out[task] = json.loads(path.read_text())
    return out


def cell(summary: dict, task: str, slug: str) -> dict | None:
    return summary["tasks"][task]["methods"].get(slug)



def method_table(runs, methods, tasks, headers, fmt):
    """A Markdown table: one row per method, one column per task, `fmt(task, cell, slug)` in each."""
    print("| method | " + " | ".join(headers) + " |")
    print("| --- " * (len(headers) + 1) + "|")
    for slug, label in methods.items():
        cells = [cell(runs[t], t, slug) for t in tasks]
        print(f"| {label} | " + " | ".join("" if c is None else fmt(t, c, slug) for t, c in zip(tasks, cells)) + " |")

def main(root: Path) -> None:
    main_runs, sweeps = load(root, "summary.json"), load(root, "bsweep.summary.json")
    walls = {}
    if (root / "walltimes.tsv").exists():
        for name, folder, seconds, command in csv.reader(open(root / "walltimes.tsv"), delimiter="\t"):
            # A step run again (resumed with a larger --limit) adds its time; the last command is shown.
            before = walls.get((name, Path(folder).name), (0, ""))[0]
            walls[(name, Path(folder).name)] = (before + int(seconds), command)
    tasks = [t for t in TASKS if t in main_runs]
    if not tasks:
        sys.exit(f"no runs under {root}")
    methods: dict[str, str] = {}
    for t in tasks:
        for slug, m in main_runs[t]["methods"].items():
            methods.setdefault(slug, m["label"])

    print("### Scores\n")
    method_table(main_runs, methods, tasks, [f"{t} ({_metric(main_runs[t], t)})" for t in tasks],
                 lambda t, c, _: f"{c['score']:.1f}")
    print("\nItems per task (finished by every method): " + ", ".join(
        f"{t} {min(c['n'] for c in main_runs[t]['tasks'][t]['methods'].values())}" for t in tasks) + ".")
    print("\nSecondary: F1 (QA), chrF (FLORES).\n")
    secondary = [t for t in tasks if main_runs[t]["tasks"][t]["metric"] != "number"]
    method_table(main_runs, methods, secondary, secondary, lambda t, c, _: "{:.1f}".format(
        c["scores"]["chrf" if main_runs[t]["tasks"][t]["metric"] == "bleu" else "f1"]))

    print("\n### Words per round (adafuse, tau 0.7, M 3, B 1)\n")
    print("| task | 1 word | 2 words | 3 words | rounds |")
    print("| --- | --- | --- | --- | --- |")
    for t in tasks:
        c = cell(main_runs[t], t, "adafuse_tau0.7_M3_B1")
        if c:
            h = c["words_per_round"]
            print(f"| {t} | {h['1']:.1f} % | {h['2']:.1f} % | {h['3']:.1f} % | {h['rounds']} |")
    print("| paper, NQ | 80.29 % | 15.53 % | 4.18 % | |")

    print("\n### Cost per item (mean wall seconds / forward passes of both models)\n")
    elsewhere: list = []     # (cell, machines) whose seconds leave out results computed elsewhere

    def cost(t: str, c: dict, slug: str) -> str:
        secs, mark = local_seconds(t, methods[slug], c, elsewhere)
        return f"{secs} s{mark} / {c['forward_passes_mean']:.0f}"

    method_table(main_runs, methods, tasks, tasks, cost)
    print_elsewhere(elsewhere)

    if sweeps:
        print("\n### B sweep (adafuse, tau 0.7, M 3)\n")
        print("| task | B=1 | B=2 | B=3 | mean s/item B=1 / 2 / 3 |")
        print("| --- | --- | --- | --- | --- |")
        elsewhere = []
        for t, s in sweeps.items():
            cs = [cell(s, t, f"adafuse_tau0.7_M3_B{b}") for b in (1, 2, 3)]
            scores = ["" if c is None else f"{c['score']:.1f}" for c in cs]
            secs = " / ".join("" if c is None else "".join(local_seconds(t, f"B={b}", c, elsewhere))
                              for b, c in zip((1, 2, 3), cs))
            n = min(c["n"] for c in cs if c is not None)
            print(f"| {t} ({n} items) | " + " | ".join(scores) + f" | {secs} |")
        print_elsewhere(elsewhere)
        print("\nPaired against B=1 on the same items (per-item metric as in the paired comparison below):\n")
        print("| task | B | items | better | worse | same | mean diff [95% CI] |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for t, s in sweeps.items():
            metric = ITEM_METRIC[s["tasks"][t]["metric"]]
            base = item_scores(root, t, "adafuse_tau0.7_M3_B1", metric)
            for b in (2, 3):
                other = item_scores(root, t, f"adafuse_tau0.7_M3_B{b}", metric)
                common = [k for k in base if k in other]
                if common:
                    print(f"| {t} ({metric}) | {b} | {paired_cells(other, base, common, metric)} |")

    print("\n### Paired comparison: adafuse against each single model, item by item\n")
    paired_table(root, tasks)

    print("\n### Whose answer does adafuse give? (normalised answers, items finished by all three)\n")
    agreement_table(root, tasks)

    print("\n### Commands and wall times (summed over the passes that extended each step)\n")
    for (name, folder), (seconds, command) in walls.items():
        print(f"- {folder} ({name}), {seconds // 60} min {seconds % 60} s: `{command}`")


def local_seconds(task: str, label: str, c: dict, elsewhere: list) -> tuple[str, str]:
    """Mean wall seconds per item of a summary cell and its mark: '†' when the cell holds results
    merged in from another machine (`eval merge`), whose seconds the report leaves out (they were
    timed there, on other hardware and load), noted in `elsewhere` with where they ran."""
    merged = c.get("computed_on", {})
    seconds = "n/a" if c["seconds_mean"] is None else f"{c['seconds_mean']:.1f}"
    if not merged:
        return seconds, ""
    elsewhere.append((f"{task} {label} {c['n'] - sum(merged.values())}/{c['n']}", sorted(merged)))
    return seconds, "†"


def print_elsewhere(elsewhere: list[tuple[str, list[str]]]) -> None:
    if elsewhere:
        where = sorted({w for _, ws in elsewhere for w in ws})
        print("\n† Mean over the results computed on this machine only (" + ", ".join(n for n, _ in elsewhere)
              + "); the others were computed and timed on " + "; ".join(where) + ".")


@functools.lru_cache(maxsize=None)
def item_records(root: Path, task: str, slug: str) -> list[dict]:
    """A method's finished records (read once: several tables use them)."""
    path = root / task / task / f"{slug}.jsonl"
    return runner.read_records([path]) if path.exists() else []


# Per-item metric of the paired comparison: the task's own for EM and accuracy; sentence chrF for
# FLORES, whose BLEU is a corpus statistic with no per-item value worth comparing.
ITEM_METRIC = {"em": "em", "f1": "f1", "number": "accuracy", "bleu": "chrf"}
ADAFUSE = "adafuse_tau0.7_M3_B1"


def item_scores(root: Path, task: str, slug: str, metric: str) -> dict[str, float]:
    return {rec["key"]: float(rec["metrics"][metric]) for rec in item_records(root, task, slug)}


def bootstrap_ci(diffs: list[float], n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean paired difference."""
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_resamples))
    return means[int(0.025 * n_resamples)], means[int(0.975 * n_resamples) - 1]


def points(metric: str) -> float:
    """Per-item metric to table points: 0/1 and F1 metrics are shown in percent, chrF as it is."""
    return 100.0 if metric in ("em", "f1", "accuracy") else 1.0


def paired_comparison(a: dict[str, float], b: dict[str, float], keys: list[str],
                      metric: str) -> tuple[str, float, float]:
    """Table cells comparing a with b item by item on `keys`: items | a better | worse | same |
    mean difference [95% bootstrap interval], in points (x100 for 0/1 and F1 metrics); and the
    interval's ends."""
    diffs = [points(metric) * (a[k] - b[k]) for k in keys]
    lo, hi = bootstrap_ci(diffs)
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return (f"{len(keys)} | {better} | {worse} | {len(keys) - better - worse} "
            f"| {sum(diffs) / len(diffs):+.1f} [{lo:+.1f}, {hi:+.1f}]"), lo, hi


def paired_cells(a: dict[str, float], b: dict[str, float], keys: list[str], metric: str) -> str:
    return paired_comparison(a, b, keys, metric)[0]


def paired_table(root: Path, tasks: list[str]) -> None:
    """For each task and single model: on the items both finished, how often adafuse scores higher,
    lower or the same, the mean difference with its 95% bootstrap interval, and the oracle that
    picks the better single model per item (what a perfect selector between the two could reach)."""
    print("| task (per-item metric) | vs | items | adafuse better | worse | same | mean diff [95% CI] | "
          "oracle of singles |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in tasks:
        summary = json.loads((root / t / "summary.json").read_text())
        metric = ITEM_METRIC[summary["tasks"][t]["metric"]]
        ada = item_scores(root, t, ADAFUSE, metric)
        singles = {slug: item_scores(root, t, slug, metric)
                   for slug, m in summary["methods"].items() if m["mode"] == "greedy"}
        common = [k for k in ada if all(k in s for s in singles.values())]
        if not common or not singles:
            continue
        oracle = points(metric) * sum(max(s[k] for s in singles.values()) for k in common) / len(common)
        for slug, single in singles.items():
            name = summary["methods"][slug]["models"][0]
            print(f"| {t} ({metric}) | {name} | {paired_cells(ada, single, common, metric)} | {oracle:.1f} |")


def item_answers(root: Path, task: str, slug: str) -> dict[str, str]:
    return {rec["key"]: normalize_answer(rec["answer"]) for rec in item_records(root, task, slug)}


def agreement_table(root: Path, tasks: list[str]) -> None:
    """Per task, how often adafuse's answer is one of the single models' answers: when both models
    agree, when it sides with one of them, and when it is neither (a span mix of the two)."""
    rows = []
    for t in tasks:
        summary = json.loads((root / t / "summary.json").read_text())
        singles = [slug for slug, m in summary["methods"].items() if m["mode"] == "greedy"]
        if len(singles) != 2:
            continue
        ada = item_answers(root, t, ADAFUSE)
        a, b = (item_answers(root, t, s) for s in singles)
        keys = [k for k in ada if k in a and k in b]
        if not keys:
            continue
        agree = sum(a[k] == b[k] for k in keys)
        same_as_agreed = sum(a[k] == b[k] == ada[k] for k in keys)
        only_a = sum(ada[k] == a[k] != b[k] for k in keys)
        only_b = sum(ada[k] == b[k] != a[k] for k in keys)
        neither = sum(ada[k] != a[k] and ada[k] != b[k] for k in keys)
        names = [summary["methods"][s]["models"][0] for s in singles]
        rows.append((t, len(keys), agree, same_as_agreed, only_a, only_b, neither, names))
    if not rows:
        return
    names = rows[0][7]
    print(f"| task | items | the two models agree | adafuse = their answer | adafuse = {names[0]} only "
          f"| adafuse = {names[1]} only | neither |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for t, n, agree, same, only_a, only_b, neither, _ in rows:
        print(f"| {t} | {n} | {agree} | {same} | {only_a} | {only_b} | {neither} |")


def _metric(summary: dict, task: str) -> str:
    t = summary["tasks"][task]
    return t.get("bleu_kind") or {"em": "EM", "f1": "F1", "accuracy": "Acc"}[t["primary"]]


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results"))
