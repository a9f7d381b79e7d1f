"""Print the tables of docs/RESULTS.md "The lineup" from the runs of scripts/eval_lineup.sh.

    python scripts/lineup_md.py runs/lineup [--min-items 150]

Reads every result file under <root>/<folder>/ (rank pieces of an unfinished run too): AdaFuse
records from the folders named after an ensemble, single-model records from any folder. Scores are per-item metrics averaged over items: exact match (%)
for NQ, TriviaQA and SQuAD, final-number accuracy (%) for GSM8K, sentence chrF for FLORES (corpus
BLEU has no per-item value to pair). Each ensemble is paired, item by item, with each of its
members on the items all of them finished, with a 95% bootstrap interval of the mean difference;
pairings on fewer than --min-items items are left out (a run still under way).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from adafuse.eval import runner  # noqa: E402
from adafuse.eval.tasks import BUILTIN  # noqa: E402
from eval_results_md import ADAFUSE, ITEM_METRIC, TASKS, paired_comparison, points  # noqa: E402

SHORT = {"smollm2-135m-instruct": "SmolLM2", "gemma3-270m": "Gemma", "qwen2.5-coder-0.5b-instruct": "Qwen-0.5B"}
ENSEMBLES = {"smol+gemma": ("smollm2-135m-instruct", "gemma3-270m"),
             "smol+qwen": ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"),
             "gemma+qwen": ("gemma3-270m", "qwen2.5-coder-0.5b-instruct"),
             "trio": ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct")}


def item_metric(task: str) -> str:
    return ITEM_METRIC[BUILTIN[task].metric]


def scores(task: str, records: dict[str, dict]) -> dict[str, float]:
    """item key -> the task's per-item metric."""
    return {key: float(rec["metrics"][item_metric(task)]) for key, rec in records.items()}


def load(root: Path) -> tuple[dict, dict, dict]:
    """(singles: model -> task -> key -> score, ensembles: name -> task -> key -> score,
    words: name -> task -> words committed per round, every round of every item)."""
    singles, ensembles, words = {}, {}, {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        for (task, slug), records in runner.records_by_method(folder).items():
            if slug == ADAFUSE and name in ENSEMBLES:
                ensembles.setdefault(name, {})[task] = scores(task, records)
                words.setdefault(name, {})[task] = [w for rec in records.values() for w in rec["words_per_round"]]
            elif slug.startswith("greedy_"):
                # a model's greedy records can sit in several folders (a run split across leases):
                # merged, the first folder's record of an item kept
                merged = singles.setdefault(slug[len("greedy_"):], {}).setdefault(task, {})
                for key, score in scores(task, records).items():
                    merged.setdefault(key, score)
    return singles, ensembles, words


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def main(root: Path, min_items: int) -> None:
    singles, ensembles, words = load(root)
    tasks = [t for t in TASKS if any(t in e for e in ensembles.values())]
    print("| task | " + " | ".join(SHORT[m] for m in SHORT) + " | " + " | ".join(ENSEMBLES) + " |")
    print("| --- " * (1 + len(SHORT) + len(ENSEMBLES)) + "|")
    for t in tasks:
        cells = [singles.get(m, {}).get(t, {}) for m in SHORT] + [ensembles.get(e, {}).get(t, {}) for e in ENSEMBLES]
        print(f"| {t} | " + " | ".join(f"{points(item_metric(t)) * mean(c.values()):.1f} ({len(c)})"
                                       if len(c) >= min_items else
                                       f"({len(c)} run)" if c else "" for c in cells) + " |")
    print()
    print("| task | ensemble | vs | items | ensemble better | worse | same | mean diff [95% CI] | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in tasks:
        for name, members in ENSEMBLES.items():
            ens = ensembles.get(name, {}).get(t)
            alone = [singles.get(m, {}).get(t) for m in members]
            if not ens or not all(alone):
                continue
            keys = [k for k in ens if all(k in a for a in alone)]
            if len(keys) < min_items:
                continue
            best = max(range(len(members)), key=lambda i: mean(alone[i][k] for k in keys))
            for i in [best] + [j for j in range(len(members)) if j != best]:
                cells, lo, hi = paired_comparison(ens, alone[i], keys, item_metric(t))
                verdict = ("" if i != best else "**beats its best member**" if lo > 0 else
                           "**loses to its best member**" if hi < 0 else "ties its best member")
                label = SHORT[members[i]] + (" (best alone)" if i == best else "")
                print(f"| {t} | {name} | {label} | {cells} | {verdict} |")


    print()
    print("| task | ensemble | items | rounds | 1 word | 2 words | 3 words |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for t in tasks:
        for name in ENSEMBLES:
            w, done = words.get(name, {}).get(t, []), ensembles.get(name, {}).get(t, {})
            if len(done) >= min_items and w:
                share = [100 * sum(x == n for x in w) / len(w) for n in (1, 2, 3)]
                print(f"| {t} | {name} | {len(done)} | {len(w)} | "
                      + " | ".join(f"{s:.1f}%" for s in share) + " |")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", type=Path, default=Path("runs/lineup"))
    ap.add_argument("--min-items", type=int, default=150)
    args = ap.parse_args()
    main(args.root, args.min_items)
