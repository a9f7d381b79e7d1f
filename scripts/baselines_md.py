"""The paper's baselines beside AdaFuse and each model alone, from one eval run (issue 18).

    python scripts/baselines_md.py RUN [RUN ...] [--min-items 1]

Each RUN is an eval --out folder (or a folder of them, one per task); together they hold adafuse,
greedy and unite and/or gac results (a method's records are merged over the folders, the first
record of an item kept). For each task: every method's score and cost (ms per output token,
forward passes per item) on the items all methods finished, then each baseline paired item by item
with AdaFuse and with the better model alone, GaC with UniTE, and AdaFuse with that model (95%
bootstrap interval). Markdown on stdout.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adafuse.eval import runner  # noqa: E402
from before_after_md import METRICS, method_records, shared_items  # noqa: E402
from eval_results_md import paired_comparison, points  # noqa: E402

ADAFUSE, UNITE, GAC = "adafuse_tau0.7_M3_B1", "unite_k10", "gac"


def cost(recs: list[dict]) -> str:
    """Mean ms per output token (tokens: the mean over the method's models of their new tokens) and
    forward passes per item, summed over models."""
    tokens = [statistics.mean(r["trace"]["stats"]["new_tokens"].values()) for r in recs]
    ms = 1000 * sum(r["seconds"] for r in recs) / max(1.0, sum(tokens))
    fwd = statistics.mean(sum(r["trace"]["stats"]["forward_passes"].values()) for r in recs)
    return f"{ms:.0f} ms / {fwd:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, nargs="+")
    p.add_argument("--min-items", type=int, default=1)
    a = p.parse_args()
    by_method = {}   # every result file, read once; a folder named first wins an item
    for run in a.run:
        for key, recs in runner.records_by_method(run).items():
            for item, rec in recs.items():
                by_method.setdefault(key, {}).setdefault(item, rec)
    present = {s for _, s in by_method}
    baselines = [s for s in (UNITE, GAC) if s in present]
    singles = sorted(s for s in present if s.startswith("greedy_"))
    slugs = [ADAFUSE] + baselines + singles
    by = {s: method_records(by_method, s) for s in slugs}
    print("| task | items | " + " | ".join(slugs) + " |")
    print("| --- | --- |" + " --- |" * len(slugs))
    pairs = []
    for task in [t for t in METRICS if all(t in by[s] for s in slugs)]:
        keys = shared_items(*(by[s][task] for s in slugs))
        if len(keys) < a.min_items:
            continue
        metric = METRICS[task][0]
        score = {s: {k: by[s][task][k]["metrics"][metric] for k in keys} for s in slugs}
        cells = [f"{points(metric) * statistics.mean(score[s].values()):.1f} ({cost([by[s][task][k] for k in keys])})"
                 for s in slugs]
        print(f"| {task} ({metric}) | {len(keys)} | " + " | ".join(cells) + " |")
        best = max(singles, key=lambda s: sum(score[s].values()))
        later = [(b, a) for i, a in enumerate(baselines) for b in baselines[i + 1:]]   # GaC vs UniTE
        for x, y in [(b, y) for b in baselines for y in (ADAFUSE, best)] + later + [(ADAFUSE, best)]:
            pairs.append(f"| {task} | {x} vs {y} | " + paired_comparison(score[x], score[y], keys, metric)[0] + " |")
    print("\nCells: score (ms per output token / forward passes per item).\n")
    print("| task | comparison | items | better | worse | same | mean diff [95% CI] |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(pairs))


if __name__ == "__main__":
    main()
