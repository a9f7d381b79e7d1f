"""Before and after a change to the engine: one method's results in two run folders, item by item.

    python scripts/before_after_md.py BEFORE AFTER [--slug adafuse_tau0.7_M3_B1] [--before-slug SLUG]

BEFORE and AFTER are eval --out folders (or folders above them: every result file under them is
read, rank pieces too). For each task both hold, on the items both finished: the scores, the paired
difference with its 95% bootstrap interval, how many answers changed, and how many of those had,
before, a winning span that ran past one of the task's stop strings (the defect that stop-aware
scoring removes, issue 15). --before-slug compares with another method in BEFORE (a single model:
`greedy_gemma3-270m`). Markdown on stdout, for docs/RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adafuse.eval import runner  # noqa: E402
from eval_results_md import paired_comparison, points  # noqa: E402

METRICS = {"nq": ("em", "f1"), "triviaqa": ("em", "f1"), "squad": ("em", "f1"), "gsm8k": ("accuracy",),
           "flores-de-en": ("chrf",), "flores-en-de": ("chrf",)}


def method_records(by_method: dict, slug: str) -> dict[str, dict[str, dict]]:
    """task -> item key -> record of one method, from runner.records_by_method's reading of a
    folder (every run folder below it merged, the first record of an item kept); failed items
    left out."""
    out: dict[str, dict[str, dict]] = {}
    for (task, s), recs in by_method.items():
        if s == slug:
            for key, rec in recs.items():
                if not rec.get("error"):
                    out.setdefault(task, {}).setdefault(key, rec)
    return out


def shared_items(*by_key: dict) -> list[str]:
    """The item keys ("line:hash") every mapping holds, in the task's line order."""
    return sorted(set.intersection(*(set(m) for m in by_key)), key=lambda k: int(k.split(":")[0]))


def crossed_stop(record: dict) -> bool:
    """Did a round's winning span hold text past a stop string (so the output was cut there)?"""
    stops = [s for s in record["trace"]["settings"].get("stop", []) if s]
    return any(any(s in r["chosen"] for s in stops) for r in record["trace"]["rounds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--slug", default="adafuse_tau0.7_M3_B1")
    p.add_argument("--before-slug", default=None, help="the method read from BEFORE (default: --slug)")
    a = p.parse_args()
    before = method_records(runner.records_by_method(a.before), a.before_slug or a.slug)
    after = method_records(runner.records_by_method(a.after), a.slug)
    print("| task | metric | items | before | after | after better | worse | same | mean diff [95% CI] "
          "| answers changed | of them, crossed a stop before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in [t for t in METRICS if t in before and t in after]:
        keys = shared_items(before[task], after[task])
        changed = [k for k in keys if before[task][k]["answer"] != after[task][k]["answer"]]
        crossed = sum(crossed_stop(before[task][k]) for k in changed)
        for metric in METRICS[task]:
            b = {k: before[task][k]["metrics"][metric] for k in keys}
            f = {k: after[task][k]["metrics"][metric] for k in keys}
            cells, _, _ = paired_comparison(f, b, keys, metric)
            scale = points(metric) / len(keys)
            _, better, worse, same, diff = cells.split(" | ")
            print(f"| {task} | {metric} | {len(keys)} | {sum(b.values()) * scale:.1f} | {sum(f.values()) * scale:.1f} "
                  f"| {better} | {worse} | {same} | {diff} | {len(changed)} | {crossed} |")


if __name__ == "__main__":
    main()
