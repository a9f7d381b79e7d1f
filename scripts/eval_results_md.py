"""Print the Markdown tables of docs/RESULTS.md from the runs of scripts/eval_results.sh.

    python scripts/eval_results_md.py [runs/results]

Reads <root>/<task>/summary.json (the main methods), <root>/<task>/bsweep.summary.json (the B
sweep) and <root>/walltimes.tsv (one line per step: name, dir, seconds, command).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

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
    """A Markdown table: one row per method, one column per task, `fmt(task, cell)` in each."""
    print("| method | " + " | ".join(headers) + " |")
    print("| --- " * (len(headers) + 1) + "|")
    for slug, label in methods.items():
        cells = [cell(runs[t], t, slug) for t in tasks]
        print(f"| {label} | " + " | ".join("" if c is None else fmt(t, c) for t, c in zip(tasks, cells)) + " |")

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
                 lambda t, c: f"{c['score']:.1f}")
    print("\nItems per task (finished by every method): " + ", ".join(
        f"{t} {min(c['n'] for c in main_runs[t]['tasks'][t]['methods'].values())}" for t in tasks) + ".")
    print("\nSecondary: F1 (QA), chrF (FLORES).\n")
    secondary = [t for t in tasks if main_runs[t]["tasks"][t]["metric"] != "number"]
    method_table(main_runs, methods, secondary, secondary, lambda t, c: "{:.1f}".format(
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
    method_table(main_runs, methods, tasks, tasks,
                 lambda t, c: f"{c['seconds_mean']:.1f} s / {c['forward_passes_mean']:.0f}")

    if sweeps:
        print("\n### B sweep (adafuse, tau 0.7, M 3)\n")
        print("| task | B=1 | B=2 | B=3 | mean s/item B=1 / 2 / 3 |")
        print("| --- | --- | --- | --- | --- |")
        for t, s in sweeps.items():
            cs = [cell(s, t, f"adafuse_tau0.7_M3_B{b}") for b in (1, 2, 3)]
            scores = ["" if c is None else f"{c['score']:.1f}" for c in cs]
            secs = " / ".join("" if c is None else f"{c['seconds_mean']:.1f}" for c in cs)
            n = min(c["n"] for c in cs if c is not None)
            print(f"| {t} ({n} items) | " + " | ".join(scores) + f" | {secs} |")

    print("\n### Commands and wall times (summed over the passes that extended each step)\n")
    for (name, folder), (seconds, command) in walls.items():
        print(f"- {folder} ({name}), {seconds // 60} min {seconds % 60} s: `{command}`")


def _metric(summary: dict, task: str) -> str:
    t = summary["tasks"][task]
    return t.get("bleu_kind") or {"em": "EM", "f1": "F1", "accuracy": "Acc"}[t["primary"]]


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results"))
