"""Bring results computed elsewhere into a run's directory.

A run split over machines that share no filesystem (a GPU host beside a laptop, two clusters) is
finished by copying the other machine's --out folder here and merging it:

    python -m adafuse eval merge --out runs/demo --from copied/demo --computed-on "cpu (16-core host)"
    python -m adafuse eval report --out runs/demo

Records the run lacks are added, each marked with where it was computed (`computed_on`, which
the reports use to keep timings of other machines apart). Records the run has are kept, unless
they were themselves computed elsewhere and `replace` names that place: results from a GPU, say,
replaced by CPU ones of the same items. Nothing is written unless every file can be merged:
records made with other settings (fingerprint), or a run still sharded in pieces, are refused.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from . import runner
from .tasks import EvalDataError

@dataclass
class MergeCount:
    kept: int = 0        # the run's own record, left as it was
    added: int = 0       # an item the run lacked
    replaced: int = 0    # the run's record from `replace`, swapped for the source's


def merge_run(into: Path, source: Path, computed_on: str | None = None,
              replace: str | None = None) -> dict[tuple[str, str], MergeCount]:
    """Merge the finished records of run `source` into run `into`; (task, method slug) -> counts.

    computed_on: marks every added record that does not carry a mark already (None: the source
    ran here, and its records stay unmarked). replace: a record of `into` whose `computed_on`
    contains this text gives way to the source's record of the same item."""
    into, source = Path(into), Path(source)
    for run in (into, source):
        if not (run / "run.json").exists():
            raise EvalDataError(f"{run} holds no run (no run.json)")
    if into.resolve() == source.resolve():
        raise EvalDataError(f"{into}: a run cannot be merged into itself")

    plans = {}        # target file -> (records to write, counts); written only once all are checked
    for (task, slug), new in sorted(runner.records_by_method(source).items()):
        target = into / task / f"{slug}.jsonl"
        unfinished = sorted(p.name for p in target.parent.glob(f"{slug}.rank*.jsonl"))
        if unfinished:
            raise EvalDataError(f"{target.parent}: {', '.join(unfinished)} are the pieces of an unfinished "
                                f"sharded run; resume it (--resume) before merging into it")
        old = {r["key"]: r for r in runner.read_records([target] if target.exists() else [])}
        _check_fingerprints(target, list(old.values()) + list(new.values()))
        count = MergeCount()
        merged = dict(old)
        for key, rec in new.items():
            mine = old.get(key)
            if mine is not None and not (replace and replace in mine.get("computed_on", "")):
                count.kept += 1
                continue
            if computed_on and "computed_on" not in rec:
                rec = {**rec, "computed_on": computed_on}
            merged[key] = rec
            count.added += mine is None
            count.replaced += mine is not None
        count.kept += len(old.keys() - new.keys())
        plans[target] = (sorted(merged.values(), key=lambda r: (int(r.get("line", 0)), r["key"])),
                         (task, slug), count)

    counts = {}
    for target, (records, name, count) in plans.items():
        if count.added or count.replaced:
            runner.write_records(target, records)
        counts[name] = count
    if any(c.added or c.replaced for c in counts.values()):
        _note_invocations(into, source, computed_on, counts)
    return counts


def _check_fingerprints(target: Path, records: list[dict]) -> None:
    """One method's records must all come from one setting: merging must not mix them."""
    prints = {json.dumps(r.get("fingerprint", {}), sort_keys=True) for r in records}
    if len(prints) > 1:
        a, b = (json.loads(p) for p in sorted(prints)[:2])
        diff = ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        raise EvalDataError(f"{target}: the records to merge were made with other settings ({diff}); "
                            f"nothing was merged")


def _note_invocations(into: Path, source: Path, computed_on: str | None, counts) -> None:
    """run.json of `into` lists each merge, and the source's invocations it did not have, noted."""
    path = into / "run.json"
    info = json.loads(path.read_text())
    entry = {"from": str(source), "computed_on": computed_on,
             "added": sum(c.added for c in counts.values()), "replaced": sum(c.replaced for c in counts.values()),
             "merged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    info.setdefault("merges", []).append(entry)
    have = {(i.get("command"), i.get("started")) for i in info["invocations"]}
    note = f"merged from {source} by `eval merge`" + (f"; ran on {computed_on}" if computed_on else "")
    for inv in json.loads((source / "run.json").read_text())["invocations"]:
        if (inv.get("command"), inv.get("started")) not in have:
            info["invocations"].append({**inv, "note": note})
    path.write_text(json.dumps(info, indent=2) + "\n")
