"""`python -m adafuse cases`: list the items of evaluation runs that match outcome filters, and
write a Markdown or HTML report of them with each case's trace round by round.

    python -m adafuse cases runs/demo --filter wins
    python -m adafuse cases runs/results --filter losses,branched --task nq --sort margin
    python -m adafuse cases runs/demo --search "capital" --report cases.html
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import AdafuseError
from . import report
from .load import CasesError, open_cases
from .select import OUTCOMES, SORTS, Query, select


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adafuse cases",
        description="Inspect the items of evaluation runs: which ones AdaFuse got right where each model "
                    "alone failed (and the reverse), and how it decided, round by round.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="filters (all must hold):\n" + "".join(f"  {k:<9} {v}\n" for k, v in OUTCOMES.items())
               + "sorts:\n" + "".join(f"  {k:<9} {v}\n" for k, v in SORTS.items()))
    p.add_argument("paths", nargs="+", metavar="RUN_DIR",
                   help="eval --out folders, folders of them, per-item JSONL files or trace JSON files")
    p.add_argument("--filter", action="append", default=[], metavar="NAME[,NAME]",
                   help="outcome filters, comma-separated or repeated: " + ", ".join(OUTCOMES))
    p.add_argument("--task", help="only this task")
    p.add_argument("--search", default="", help="words that must all occur in the question, references, "
                                                "answers or note (case-insensitive)")
    p.add_argument("--sort", default="order", choices=list(SORTS))
    p.add_argument("--reverse", action="store_true", help="reverse the sort")
    p.add_argument("--method", help="the method to inspect (slug or label; default: adafuse)")
    p.add_argument("--metric", help="per-item metric for the outcomes (default: each task's: em, accuracy, chrf)")
    p.add_argument("--limit", type=int, help="print at most N items")
    p.add_argument("--report", type=Path, help="write the matching items with their traces to FILE.md or FILE.html")
    p.add_argument("--report-limit", type=int, default=50, help="most items in the report (default 50)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except AdafuseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.report and args.report.suffix.lower() not in (".md", ".html", ".htm"):
        raise CasesError(f"--report {args.report}: the name must end in .md or .html")
    for name, value in (("--limit", args.limit), ("--report-limit", args.report_limit)):
        if value is not None and value < 1:
            raise CasesError(f"{name} must be at least 1")
    started = time.perf_counter()
    run = open_cases(args.paths)
    for w in run.warnings:
        print(f"warning: {w}", file=sys.stderr)
    outcomes = tuple(o.strip() for f in args.filter for o in f.split(",") if o.strip())
    query = Query(outcomes, args.task, args.search, args.sort, args.reverse, args.method, args.metric).checked()
    rows = select(run, query)
    print(report.describe(run, query, len(rows)) + f" ({time.perf_counter() - started:.2f} s)\n")
    print(report.listing(run, rows[: args.limit] if args.limit else rows, query), end="")
    if args.limit and len(rows) > args.limit:
        print(f"... {len(rows) - args.limit} more (raise --limit)")
    if args.report:
        shown = rows[: args.report_limit]
        text = (report.markdown_report if args.report.suffix.lower() == ".md" else report.html_report)(
            run, shown, query, len(rows))
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
        print(f"wrote {args.report} ({len(shown)} items)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
