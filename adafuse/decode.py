"""The round loop: starts every model's state, runs the method's round (adafuse/rounds.py) until a
stop condition, and yields the trace after every round."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import torch

from .config import DecodeConfig
from .errors import InputError
from .models import LM
from .parallel import map_lms
from .rounds import adafuse_round
from .state import PromptCache, start
from .stops import first_stop
from .trace import Stats, Trace
from .unite import unite_round
from .gac import gac_round

# Each DecodeConfig.mode's round function (adafuse/rounds.py). `fixed` and `greedy` are AdaFuse's
# round with a fixed number of words (propose.py reads the mode); a new method adds its own entry.
ROUNDS = {"adafuse": adafuse_round, "fixed": adafuse_round, "greedy": adafuse_round, "unite": unite_round,
          "gac": gac_round}


def generate(lms: list[LM], prompt: str, config: DecodeConfig = DecodeConfig(), **kw) -> Trace:
    """Decode `prompt` with the ensemble `lms`; returns the full trace."""
    trace = None
    for trace in stream(lms, prompt, config, **kw):
        pass
    return trace


@torch.inference_mode()
def stream(lms: list[LM], prompt: str, config: DecodeConfig = DecodeConfig(), *,
           should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None,
           prompt_cache: PromptCache | None = None) -> Iterator[Trace]:
    """Yield the same Trace after every round, and once more at the end with its stop reason.
    `prompt_cache` (state.PromptCache) lets a run of many prompts skip prefilling shared prefixes.

    All decoding state lives in this generator: closing it early (a cancelled request) leaves
    nothing behind in the models.
    """
    cfg = config.validated()
    lms = list(lms)
    _check_inputs(lms, prompt, cfg)
    names = _unique_names([lm.name for lm in lms])
    t0 = time.perf_counter()
    if prompt_cache is None:   # the prefills at once on GPUs (parallel.py); a PromptCache's counters are not thread-safe
        states = map_lms(lambda lm, name: start(lm, name, prompt, cfg.prompt_format, execution=cfg.execution),
                         cfg.execution, lms, names)
    else:
        states = [start(lm, name, prompt, cfg.prompt_format, prompt_cache, cfg.execution)
                  for lm, name in zip(lms, names)]
    settings = {"tau": cfg.tau, "max_words": cfg.max_words, "branches": cfg.branches,
                "fixed_words": cfg.fixed_words, "top_k": cfg.top_k, "max_new_tokens": cfg.max_new_tokens,
                "prompt_format": cfg.prompt_format, "stop": list(cfg.stop), "end_marker": cfg.end_marker,
                "prompt_format_used": {s.name: s.prompt_format for s in states}}
    trace = Trace(prompt, cfg.mode, names, settings)
    run_round = ROUNDS[cfg.mode]
    reason = ""
    while not reason:
        if should_stop is not None and should_stop():
            reason = "cancelled"
            break
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            reason = "time_limit"
            break
        budgets = [min(cfg.max_new_tokens - s.new_tokens, s.lm.context_length - len(s.ids) - 1) for s in states]
        if min(budgets) <= 0:
            reason = "max_new_tokens" if any(s.new_tokens >= cfg.max_new_tokens for s in states) else "context_full"
            break
        committed_before = trace.text
        rnd = run_round(states, cfg, budgets, trace.text, len(trace.rounds))
        trace.rounds.append(rnd)
        trace.text += rnd.winner.output
        reason = _stop_reason(trace, committed_before, cfg, states, rnd.winner.eos)
        _fill_stats(trace, states, t0, "")
        if not reason:
            yield trace
    _fill_stats(trace, states, t0, reason)
    yield trace


def _stop_reason(trace: Trace, before: str, cfg: DecodeConfig, states, win_eos: bool) -> str:
    if cfg.stop:
        hit = first_stop(trace.text, cfg.stop, len(before))   # only the new text can hold a new match
        if hit is not None:
            trace.text = trace.text[:hit[0]]
            return "stop_string"
    if win_eos:
        return "eos"
    if any(s.new_tokens >= cfg.max_new_tokens for s in states):
        return "max_new_tokens"
    if any(len(s.ids) >= s.lm.context_length - 1 for s in states):
        return "context_full"
    return ""


def _fill_stats(trace: Trace, states, t0: float, reason: str) -> None:
    trace.stats = Stats(time.perf_counter() - t0, {s.name: s.forward_passes for s in states},
                        {s.name: s.new_tokens for s in states}, reason)


def _check_inputs(lms: list[LM], prompt, cfg: DecodeConfig) -> None:
    if not lms:
        raise InputError("no model given")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty")
    if cfg.mode == "greedy" and len(lms) != 1:
        raise InputError(f"greedy mode decodes with one model, got {len(lms)}: "
                         f"{', '.join(lm.name for lm in lms)}")


def _unique_names(names: list[str]) -> list[str]:
    out = []
    for n in names:
        k, name = 1, n
        while name in out:
            k += 1
            name = f"{n}#{k}"
        out.append(name)
    return out


__all__ = ["generate", "stream"]
