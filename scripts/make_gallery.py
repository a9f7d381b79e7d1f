"""Regenerate the gallery the app's Cases view opens on (assets/gallery) from evaluation runs.

    python scripts/make_gallery.py runs/results                 # every run under runs/results
    python scripts/make_gallery.py runs/results/nq runs/results/gsm8k --per-task 3 --limit 15

Per task it picks up to --per-task cases of different kinds (AdaFuse right where each model alone
was wrong; the models disagreed and AdaFuse went with the better one; AdaFuse wrong where a model
was right; an answer neither model gave; a near tie), closest decisions first, and writes their
per-item records (traces without token ids) and a note per case. No model is loaded.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adafuse.cases import gallery  # noqa: E402
from adafuse.cases.load import open_cases  # noqa: E402
from adafuse.errors import AdafuseError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="eval --out folders, or folders of them")
    p.add_argument("--out", type=Path, default=ROOT / "assets" / "gallery")
    p.add_argument("--per-task", type=int, default=2)
    p.add_argument("--limit", type=int, default=12, help="most cases in all")
    args = p.parse_args(argv)
    try:
        run = open_cases(args.runs)
        for w in run.warnings:
            print(f"warning: {w}", file=sys.stderr)
        picks = gallery.curate(run, per_task=args.per_task, limit=args.limit)
        if not picks:
            raise AdafuseError("no case to show: the runs hold no AdaFuse traces")
        command = "python scripts/make_gallery.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        files = gallery.write(run, picks, args.out, command)
    except AdafuseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for case, kind, note in picks:
        print(f"{case.name:<16} {kind:<7} {note}")
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(picks)} cases, {len(files)} files, {size / 1024:.0f} KiB to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
