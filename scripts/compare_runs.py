"""Do two eval runs give the same answers on the items both finished? Per method: items in common,
identical predictions, identical metric values, and the first differing item.

    python scripts/compare_runs.py RUN_A RUN_B      # two --out directories (or their task folders)

Used to check that a run made elsewhere (another device, batched, sharded) reproduces this one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adafuse.eval import runner  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    a = p.parse_args()
    ra, rb = runner.records_by_method(a.run_a), runner.records_by_method(a.run_b)
    print("| task | method | in common | same prediction | same metrics | first difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    totals = [0, 0, 0]
    for task, slug in sorted(set(ra) & set(rb)):
        x, y = ra[(task, slug)], rb[(task, slug)]
        common = sorted(set(x) & set(y), key=lambda k: int(x[k].get("line", 0)))
        same = [k for k in common if x[k]["prediction"] == y[k]["prediction"]]
        metrics = [k for k in common if x[k]["metrics"] == y[k]["metrics"]]
        first = next((f"line {x[k].get('line')}" for k in common if k not in same), "-")
        print(f"| {task} | {slug} | {len(common)} | {len(same)} | {len(metrics)} | {first} |")
        for i, n in enumerate((len(common), len(same), len(metrics))):
            totals[i] += n
    print(f"| all | all | {totals[0]} | {totals[1]} | {totals[2]} | |")


if __name__ == "__main__":
    main()
