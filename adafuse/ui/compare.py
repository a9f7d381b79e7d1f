"""The comparison: the same prompt decoded by each single model alone (greedy), by
fixed-length rounds (L = 1, 2, 3), by UniTE and by GaC, next to AdaFuse, each measured on the ensemble's own
objective, latency, forward passes and, given a reference, the task metrics."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from ..config import DecodeConfig
from ..trace import Trace
from . import metrics
from ..render import short_name
from .scoring import OutputScorer

FIXED_LENGTHS = (1, 2, 3)


@dataclass
class MethodResult:
    name: str
    text: str
    objective: float                 # mean over models of each model's mean per-token NLL of `text`
    nll: dict[str, float]            # model -> mean per-token NLL of `text`
    seconds: float
    forward_passes: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""
    flag: str = ""                   # why the output is degenerate ("repeats the prompt"), or ""

    def to_dict(self) -> dict:
        return {"name": self.name, "text": self.text,
                "objective": None if math.isnan(self.objective) else round(self.objective, 6),
                "nll": {k: round(v, 6) for k, v in self.nll.items()}, "seconds": round(self.seconds, 4),
                "forward_passes": dict(self.forward_passes), "metrics": dict(self.metrics),
                "stop_reason": self.stop_reason, "flag": self.flag}


def plan(lms: list, cfg: DecodeConfig) -> list[tuple[str, list, DecodeConfig]]:
    """(method name, models it uses, settings) for every baseline, in display order."""
    out = [(f"greedy {short_name(lm.name)}", [lm], replace(cfg, mode="greedy")) for lm in lms]
    out += [(f"fixed L={n}", lms, replace(cfg, mode="fixed", fixed_words=n)) for n in FIXED_LENGTHS]
    out.append((f"UniTE k={cfg.top_k}", lms, replace(cfg, mode="unite")))   # a Table 1 baseline of the paper
    out.append(("GaC", lms, replace(cfg, mode="gac")))   # token-level averaging over whole vocabularies
    return out


def decodes(n_models: int) -> int:
    """How many decodes a comparison of `n_models` models runs: AdaFuse and plan()'s baselines."""
    return 1 + len(plan([SimpleNamespace(name=f"model {i}") for i in range(n_models)], DecodeConfig()))


def measure(name: str, trace: Trace, scorer: OutputScorer, task: str, reference: str) -> MethodResult:
    """Score a finished decode: the ensemble objective is computed with *all* models of the
    ensemble (the scorer's), also for single-model baselines, so the methods share one scale."""
    objective, nll = scorer.objective(trace.text)
    return MethodResult(name, trace.text, objective, nll, trace.stats.seconds, dict(trace.stats.forward_passes),
                        metrics.score(task, trace.text, reference), trace.stats.stop_reason,
                        degenerate(trace.text, trace.prompt))


def degenerate(text: str, prompt: str) -> str:
    """Why an output is degenerate, or "": it repeats a line of the prompt (of 4+ words), or a
    run of 6 words occurs 3+ times in it. The models find such text very likely, so it can have
    the lowest objective of all (Gemma repeating the prompt three times did)."""
    lines = {" ".join(line.split()) for line in prompt.splitlines() if len(line.split()) >= 4}
    flat = " ".join(text.split())
    if any(line in flat for line in lines):
        return "repeats the prompt"
    words = text.split()
    runs = Counter(tuple(words[i:i + 6]) for i in range(len(words) - 5))
    return "repeats itself" if runs and max(runs.values()) >= 3 else ""


def best_index(results: list[MethodResult]) -> int | None:
    """The ★ method: the lowest ensemble objective among the outputs not flagged degenerate. A
    user reads the star as "the best answer", which a repeated prompt never is."""
    vals = [(r.objective, i) for i, r in enumerate(results) if not math.isnan(r.objective) and not r.flag]
    return min(vals)[1] if vals else None
