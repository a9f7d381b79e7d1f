"""The round loop: every model proposes, every model scores what it did not propose, the lowest
mean NLL wins and every model commits it, reusing the KV it already computed for it."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import torch

from . import kv
from .config import DecodeConfig
from .errors import InputError
from .models import LM
from .parallel import map_models
from .propose import Span, propose
from .score import ScoredRow, commit_scored, score
from .state import ModelState, PromptCache, start
from .trace import Candidate, Round, Stats, Trace


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
    states = [start(lm, name, prompt, cfg.prompt_format, prompt_cache) for lm, name in zip(lms, names)]
    settings = {"tau": cfg.tau, "max_words": cfg.max_words, "branches": cfg.branches,
                "fixed_words": cfg.fixed_words, "max_new_tokens": cfg.max_new_tokens,
                "prompt_format": cfg.prompt_format, "stop": list(cfg.stop),
                "prompt_format_used": {s.name: s.prompt_format for s in states}}
    trace = Trace(prompt, cfg.mode, names, settings)
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
        rnd, win_eos = _round(states, cfg, budgets, trace.text, len(trace.rounds))
        trace.rounds.append(rnd)
        trace.text += rnd.chosen
        reason = _stop_reason(trace, committed_before, cfg, states, win_eos)
        _fill_stats(trace, states, t0, "")
        if not reason:
            yield trace
    _fill_stats(trace, states, t0, reason)
    yield trace


def _round(states: list[ModelState], cfg: DecodeConfig, budgets: list[int], committed: str,
           index: int) -> tuple[Round, bool]:
    proposals, own = [], []           # own[k]: {(text, eos): Span} proposed by model k
    candidates: list[Candidate] = []
    by_key: dict[tuple[str, bool], Candidate] = {}
    devices = [s.lm.device for s in states]
    results = map_models(lambda state, budget: propose(state, cfg, budget), devices, states, budgets)
    for state, (proposal, spans) in zip(states, results):
        proposals.append(proposal)
        mine = {}
        for span in spans:
            key = (span.text, span.eos)
            mine.setdefault(key, span)
            cand = by_key.get(key)
            if cand is None:
                cand = by_key[key] = Candidate(span.text, [], span.eos, span.words)
                candidates.append(cand)
            if state.name not in cand.proposers:
                cand.proposers.append(state.name)
                cand.nll[state.name] = span.nll
                cand.tokens[state.name] = len(span.token_logprobs)
                cand.token_ids[state.name] = span.token_ids + ([state.lm.eos_id] if span.eos else [])
                cand.context_len[state.name] = len(state.ids)
        own.append(mine)

    scored: list[dict[tuple[str, bool], ScoredRow]] = []
    todos = [[(c.text, c.eos) for c in candidates if (c.text, c.eos) not in mine] for mine in own]
    def score_others(state, todo, mine):
        if not todo:
            return []
        main = next(iter(mine.values()))  # every span of a model shares its main-cache tokens
        # The main cache holds the span's shared tokens, then whatever lookahead is left.
        return score(state, committed, todo, main.token_ids[:main.shared] + state.lookahead,
                     main.dists[:main.shared] + state.lookahead_dists)

    results = map_models(score_others, devices, states, todos, own)
    for state, todo, result in zip(states, todos, results):
        rows = dict(zip(todo, result))
        for key, row in rows.items():
            by_key[key].nll[state.name] = row.nll
            by_key[key].tokens[state.name] = len(row.scored_ids)
            by_key[key].token_ids[state.name] = row.scored_ids
            by_key[key].context_len[state.name] = row.span_start
        scored.append(rows)

    for c in candidates:
        c.nll = {s.name: c.nll[s.name] for s in states}   # model order, not arrival order
        c.tokens = {s.name: c.tokens[s.name] for s in states}
        c.token_ids = {s.name: c.token_ids[s.name] for s in states}
        c.context_len = {s.name: c.context_len[s.name] for s in states}
        c.score = sum(c.nll.values()) / len(c.nll)
    best = min(range(len(candidates)), key=lambda i: (candidates[i].score, i))
    win = candidates[best]
    key = (win.text, win.eos)
    for state, mine, rows in zip(states, own, scored):
        if key in mine:
            _commit_own(state, mine[key])
        else:
            commit_scored(state, rows[key])
    return Round(index, proposals, candidates, best), win.eos


def _commit_own(state: ModelState, span: Span) -> None:
    """The winner is this model's own span: its KV is already computed, keep it."""
    state.ids = state.ids + span.token_ids
    if span.cache is not state.cache:  # a branch row; the main cache's lookahead is stale
        state.cache = kv.select_row(span.cache, span.row, len(state.ids))
        state.lookahead, state.lookahead_dists = [], []
    state.next_logprobs = span.next_logprobs


def _stop_reason(trace: Trace, before: str, cfg: DecodeConfig, states, win_eos: bool) -> str:
    if cfg.stop:
        # Only the new text (plus a stop string's length of overlap) can hold a new match.
        lo = max(0, len(before) - max(len(s) for s in cfg.stop) + 1)
        hits = [i for i in (trace.text.find(s, lo) for s in cfg.stop) if i >= 0]
        if hits:
            trace.text = trace.text[:min(hits)]
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
