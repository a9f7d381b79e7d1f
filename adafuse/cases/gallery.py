"""The gallery: a few cases from the project's own runs where the ensemble's decisions are worth
reading, each with a note saying why. `scripts/make_gallery.py RUN_DIR...` writes it to
assets/gallery as a small run folder (the same per-item JSONL; AdaFuse's traces without the token
ids that only serve to recompute NLLs) plus notes.json; the app's Cases view opens on it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..eval.metrics import normalize_answer
from .load import NOTES_FILE, Case, Run, read_lines, load_trace
from .report import METRIC_NAMES, contested, reference_text, short
from .select import Verdict, is_binary, verdict

# What makes a case worth showing, in the order they are picked; (right/wrong, graded) wording.
KINDS = {
    "wins": ("AdaFuse right where each model alone was wrong", "AdaFuse better than each model alone"),
    "sided": ("the models disagreed and AdaFuse went with the right one",
              "the models differed and AdaFuse matched the better one"),
    "losses": ("AdaFuse wrong where a model alone was right", "AdaFuse worse than the better model alone"),
    "novel": ("AdaFuse's answer is neither model's",) * 2,
    "close": ("a near tie in one round decided the output",) * 2,
}
CLOSE = 0.05          # fused-score margin (mean NLL) below which a round counts as a near tie


def kind_of(case: Case, v: Verdict, run: Run, focus: str) -> list[str]:
    """Every kind the case belongs to."""
    singles = [case.results[s] for s in run.singles() if s in case.results]
    scores = [r.metrics.get(case.metric) for r in singles]
    out = []
    if v.wins:
        out.append("wins")
    if (v.focus is not None and len(scores) >= 2 and None not in scores and v.focus >= max(scores) > min(scores)):
        out.append("sided")
    if v.losses:
        out.append("losses")
    mine = normalize_answer(case.results[focus].answer)
    if singles and mine and all(normalize_answer(r.answer) != mine for r in singles):
        out.append("novel")
    if v.info and v.info.margin is not None and v.info.margin < CLOSE:
        out.append("close")
    return out


def curate(run: Run, per_task: int = 2, limit: int = 12) -> list[tuple[Case, str, str]]:
    """(case, kind, note): per task up to `per_task` cases of different kinds (wins first), then
    tasks taken in turn up to `limit`. Within a kind the closest decisions come first."""
    focus = run.default_focus()
    if focus is None:
        return []
    infos = run.trace_info(focus)
    picks: dict[str, list[tuple[Case, str]]] = {}
    for task in run.tasks:
        pool = []
        for case in run.cases:
            if case.task == task and focus in case.results and infos[case.index] is not None:
                v = verdict(case, focus, run.singles(), infos[case.index])
                pool.append((case, v, kind_of(case, v, run, focus)))
        chosen: list[tuple[Case, str]] = []
        for kind in KINDS:
            if len(chosen) >= per_task:
                break
            fits = [(c, v) for c, v, kinds in pool if kind in kinds and c not in [x for x, _ in chosen]]
            if fits:
                chosen.append((min(fits, key=lambda cv: _rank(kind, cv[1]))[0], kind))
        picks[task] = chosen
    ordered = []
    for i in range(per_task):                   # one per task in turn, so every task shows up
        ordered += [p[i] for p in picks.values() if len(p) > i]
    ordered = sorted(ordered[:limit], key=lambda ck: list(KINDS).index(ck[1]))    # the strongest kinds first
    return [(c, kind, note(run, c, kind, focus)) for c, kind in ordered]


def _rank(kind: str, v: Verdict) -> tuple:
    """Biggest gains and losses first; for the other kinds, the closest decision first."""
    margin = v.info.margin if v.info and v.info.margin is not None else float("inf")
    gain = v.gain or 0.0
    return {"wins": (-gain, margin), "losses": (gain, margin)}.get(kind, (margin,))


def note(run: Run, case: Case, kind: str, focus: str) -> str:
    """What happened, in one or two sentences, with the closest round of the decode."""
    metric = METRIC_NAMES.get(case.metric, case.metric)
    said = "; ".join(f"{run.methods[s].models[0] if run.methods[s].models else s}: "
                     f"{_answer(case, s)}" for s in run.singles() if s in case.results)
    what = KINDS[kind][0 if is_binary(case.metric) else 1]
    text = f"{what[0].upper()}{what[1:]} ({metric}; reference {short(reference_text(case), 60)}). "
    text += f"AdaFuse: {_answer(case, focus)}; alone, {said}."
    trace = load_trace(case, focus)
    fought = contested(trace) if trace else []
    if fought:
        rnd = min(fought, key=lambda r: sorted(c.score for c in r.candidates)[1] - r.winner.score)
        runner = min((c for i, c in enumerate(rnd.candidates) if i != rnd.chosen_index), key=lambda c: c.score)
        text += (f" Closest call, round {rnd.number}: {rnd.winner.text.strip()!r} beat {runner.text.strip()!r} "
                 f"by {runner.score - rnd.winner.score:.3f} in mean NLL.")
    return text


def _answer(case: Case, slug: str) -> str:
    r = case.results[slug]
    value = r.metrics.get(case.metric)
    mark = "" if value is None else (" ✓" if value >= 1 else " ✗") if is_binary(case.metric) else f" ({value:.1f})"
    return f"{short(r.answer, 50)!r}{mark}" if r.answer.strip() else f"(empty){mark}"


def write(run: Run, picks: list[tuple[Case, str, str]], out_dir: Path, made_with: str) -> list[Path]:
    """The picked cases as a run folder: every method's record of each (the inspected method's
    with its trace, without token ids; the others' answers and scores only, which keeps the folder
    small) and notes.json (kind and note per case, in the order to show them). Replaces earlier
    files."""
    focus = run.default_focus()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*/*.jsonl"):
        old.unlink()
    lines: dict[Path, list[str]] = {}
    for case, _, _ in picks:
        wanted = [(r.where, slug) for slug, r in case.results.items() if r.where is not None]
        for where, slug, raw in read_lines(wanted):
            rec = json.loads(raw)
            rec["trace"] = slim(rec.get("trace")) if slug == focus else None
            path = out_dir / _safe(case.task) / f"{slug}.jsonl"
            lines.setdefault(path, []).append(json.dumps(rec, ensure_ascii=False))
    for path, rows in lines.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    notes = {"made_with": made_with, "models": sorted({m for x in run.methods.values() for m in x.models}),
             "cases": [{"task": c.task, "key": c.key, "kind": kind, "note": text} for c, kind, text in picks]}
    (out_dir / NOTES_FILE).write_text(json.dumps(notes, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for empty in out_dir.iterdir():
        if empty.is_dir() and not any(empty.iterdir()):
            os.rmdir(empty)
    return sorted(lines) + [out_dir / NOTES_FILE]


def slim(trace: dict | None) -> dict | None:
    """A trace without the scored token ids (they only serve to recompute NLLs from scratch)."""
    if not isinstance(trace, dict):
        return trace
    for rnd in trace.get("rounds", []):
        for c in rnd.get("candidates", []):
            c.pop("token_ids", None)
            c.pop("context_len", None)
    return trace


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in name)
