"""Find the cases that matter: outcome filters, task, text search, sorting and paging.

Outcomes compare the inspected method (the "focus", an AdaFuse method by default) with the single
models (greedy methods) on each item's own metric: EM for QA, final-number accuracy for GSM8K,
sentence chrF for translation. For a right/wrong metric, "wins" is AdaFuse right where every single
model is wrong and "losses" AdaFuse wrong where some single model is right; for a graded metric
(chrF) the same comparison reads: better than every single model, worse than the best one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..eval.metrics import normalize_answer
from .load import BINARY_METRICS, Case, CasesError, Run, TraceInfo

OUTCOMES = {
    "wins": "AdaFuse right, every single model wrong",
    "losses": "AdaFuse wrong, some single model right",
    "disagree": "AdaFuse and the single models do not all give the same answer",
    "branched": "AdaFuse's decode has rounds that branched",
    "errors": "some method failed on the item",
}
SORTS = {
    "order": "run order (task, then line)",
    "margin": "closest fused-score margin first (the narrowest decision in the decode)",
    "rounds": "most rounds first",
    "gain": "largest gain over the best single model first",
}


@dataclass(frozen=True)
class Query:
    outcomes: tuple[str, ...] = ()       # all must hold
    task: str | None = None
    search: str = ""                     # every word must occur (question, references, answers, note)
    sort: str = "order"
    reverse: bool = False
    focus: str | None = None             # slug or label; None: Run.default_focus()
    metric: str | None = None            # per-item metric for outcomes; None: each task's own

    def checked(self) -> "Query":
        bad = [o for o in self.outcomes if o not in OUTCOMES]
        if bad:
            raise CasesError(f"unknown filter {bad[0]!r}; choose from {', '.join(OUTCOMES)}")
        if self.sort not in SORTS:
            raise CasesError(f"unknown sort {self.sort!r}; choose from {', '.join(SORTS)}")
        return self


@dataclass(frozen=True)
class Verdict:
    """How the focus method did on one case against the single models."""
    focus: float | None             # its score on the case's metric
    best_single: float | None
    wins: bool
    losses: bool
    disagree: bool
    errors: bool
    info: TraceInfo | None

    @property
    def gain(self) -> float | None:
        if self.focus is None or self.best_single is None:
            return None
        return self.focus - self.best_single

    @property
    def branched(self) -> bool:
        return bool(self.info and self.info.branched)


def verdict(case: Case, focus: str | None, singles: list[str], info: TraceInfo | None,
            metric: str | None = None) -> Verdict:
    metric = metric or case.metric
    own = case.results.get(focus) if focus else None
    score = _score(own, metric)
    single_scores = [s for s in (_score(case.results.get(x), metric) for x in singles if x != focus) if s is not None]
    best = max(single_scores) if single_scores else None
    compared = [case.results[x] for x in ([focus] + singles if singles else list(case.results))
                if x in case.results]
    answers = {normalize_answer(r.answer) for r in compared}
    return Verdict(score, best, score is not None and best is not None and score > best,
                   score is not None and best is not None and score < best,
                   len(compared) > 1 and len(answers) > 1,
                   any(r.error for r in case.results.values()), info)


def _score(result, metric: str) -> float | None:
    if result is None:
        return None
    value = result.metrics.get(metric)
    return None if value is None or math.isnan(value) else value


def is_binary(metric: str) -> bool:
    return metric in BINARY_METRICS


def select(run: Run, query: Query) -> list[tuple[Case, Verdict]]:
    """The matching cases, sorted, each with its verdict."""
    query.checked()
    focus = run.method(query.focus)
    if query.task and query.task not in run.tasks:
        raise CasesError(f"no task {query.task!r} in {run.name}; it has {', '.join(run.tasks)}")
    infos = run.trace_info(focus) if focus else [None] * len(run.cases)
    singles = run.singles()
    words = query.search.lower().split()
    out = []
    for case in run.cases:
        if query.task and case.task != query.task:
            continue
        if words and not _mentions(case, words):
            continue
        v = verdict(case, focus, singles, infos[case.index], query.metric)
        if all(getattr(v, o) for o in query.outcomes):
            out.append((case, v))
    return _sorted(out, query.sort, query.reverse)


def _mentions(case: Case, words: list[str]) -> bool:
    text = " ".join([case.name, case.question, case.note, *case.references,
                     *(r.prediction for r in case.results.values())]).lower()
    return all(w in text for w in words)


def _sorted(rows, sort: str, reverse: bool):
    if sort == "order":
        return rows[::-1] if reverse else rows
    value = {"margin": lambda v: v.info.margin if v.info else None,
             "rounds": lambda v: v.info.rounds if v.info else None,
             "gain": lambda v: v.gain}[sort]
    have = [r for r in rows if value(r[1]) is not None]
    missing = [r for r in rows if value(r[1]) is None]        # always last, whatever the direction
    descending = sort != "margin"
    have.sort(key=lambda r: value(r[1]), reverse=descending != reverse)   # stable: ties keep run order
    return have + missing


def page(rows: list, number: int, size: int) -> tuple[list, int, int]:
    """Rows of page `number` (1-based, clamped), that number, and the page count."""
    pages = max(1, math.ceil(len(rows) / size))
    number = min(max(1, int(number or 1)), pages)
    return rows[(number - 1) * size: number * size], number, pages
