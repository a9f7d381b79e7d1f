"""The round loop: every model proposes, the spans are united (cut at stop strings), every model
scores what it has no NLL for, the lowest mean NLL wins and every model commits it, reusing the KV
it already computed for it."""
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
from .stops import candidate_key, find_stop, first_stop
from .trace import Candidate, Round, Stats, Trace
from .unite import unite_round


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
                "fixed_words": cfg.fixed_words, "top_k": cfg.top_k, "max_new_tokens": cfg.max_new_tokens,
                "prompt_format": cfg.prompt_format, "stop": list(cfg.stop), "end_marker": cfg.end_marker,
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
        round_fn = unite_round if cfg.mode == "unite" else _round
        rnd, win = round_fn(states, cfg, budgets, trace.text, len(trace.rounds))
        trace.rounds.append(rnd)
        trace.text += win.output
        reason = _stop_reason(trace, committed_before, cfg, states, win.eos)
        _fill_stats(trace, states, t0, "")
        if not reason:
            yield trace
    _fill_stats(trace, states, t0, reason)
    yield trace


def _round(states: list[ModelState], cfg: DecodeConfig, budgets: list[int], committed: str,
           index: int) -> tuple[Round, Candidate]:
    """One round of docs/ENGINE.md: propose, union, score, choose, commit. Returns the round's
    record and its winner."""
    devices = [s.lm.device for s in states]
    # 1. Propose: each model's greedy words while confident, B branches where it is not.
    results = map_models(lambda state, budget: propose(state, cfg, budget), devices, states, budgets)
    proposals = [proposal for proposal, _ in results]
    spans = [model_spans for _, model_spans in results]
    # 2. Union: the distinct candidates, each cut at the first stop string it reaches.
    candidates, own = _union(states, spans, committed, cfg)
    # 3. Score: each model scores, in one batched forward, the candidates it has no NLL for.
    scored = _score_the_rest(states, spans, candidates, own, committed)
    # 4. Choose: the lowest mean over models of each model's mean per-token NLL.
    for c in candidates:
        c.nll = {s.name: c.nll[s.name] for s in states}   # model order, not arrival order
        c.tokens = {s.name: c.tokens[s.name] for s in states}
        c.token_ids = {s.name: c.token_ids[s.name] for s in states}
        c.context_len = {s.name: c.context_len[s.name] for s in states}
        c.score = sum(c.nll.values()) / len(c.nll)
    best = min(range(len(candidates)), key=lambda i: (candidates[i].score, i))
    win = candidates[best]
    # 5. Commit: every model appends the winner, keeping the KV it already computed for it.
    key = (win.text, win.eos)
    for state, mine, rows in zip(states, own, scored):
        if key in mine:
            _commit_own(state, mine[key])
        else:
            commit_scored(state, rows[key])
    return Round(index, proposals, candidates, best), win


def _union(states: list[ModelState], spans: list[list[Span]], committed: str,
           cfg: DecodeConfig) -> tuple[list[Candidate], list[dict[tuple[str, bool], Span]]]:
    """The distinct candidates, by (text, ends the output), in proposal order; and for each model
    the spans whose NLL it already has from proposing them. A span that reaches a stop string
    becomes its text up to the stop plus the end marker (adafuse/stops.py); its tokens changed, so
    its proposer scores it like every other model and it is not among the proposer's own."""
    candidates, by_key, own = [], {}, []
    for state, model_spans in zip(states, spans):
        mine = {}
        for span in model_spans:
            cut = find_stop(committed, span.text, cfg.stop)
            key = (span.text, span.eos) if cut is None else candidate_key(cut, cfg.end_marker)
            cand = by_key.get(key)
            if cand is None:
                cand = by_key[key] = Candidate(key[0], [], key[1], span.words)
                if cut is not None:
                    cand.stop, cand.dropped = cut.stop, cut.dropped
                    # the words before the stop; one that only ends the output counts one, as EOS did
                    cand.words = min(span.words, max(1, len(cut.kept.split())))
                candidates.append(cand)
            if state.name not in cand.proposers:
                cand.proposers.append(state.name)
            if cut is None and key not in mine:
                mine[key] = span
                cand.nll[state.name] = span.nll
                cand.tokens[state.name] = len(span.token_logprobs)
                cand.token_ids[state.name] = span.token_ids + ([state.lm.eos_id] if span.eos else [])
                cand.context_len[state.name] = len(state.ids)
        own.append(mine)
    return candidates, own


def _score_the_rest(states: list[ModelState], spans: list[list[Span]], candidates: list[Candidate],
                    own: list[dict], committed: str) -> list[dict[tuple[str, bool], ScoredRow]]:
    """Each model's score of every candidate it has no NLL for, written into the candidates;
    returns, per model, those rows (a row is what the model commits if its candidate wins)."""
    todos = [[(c.text, c.eos) for c in candidates if (c.text, c.eos) not in mine] for mine in own]

    def score_todo(state, todo, model_spans):
        if not todo:
            return []
        main = model_spans[0]  # every span of a model shares its main-cache tokens
        # The main cache holds the span's shared tokens, then whatever lookahead is left.
        return score(state, committed, todo, main.token_ids[:main.shared] + state.lookahead,
                     main.dists[:main.shared] + state.lookahead_dists)

    results = map_models(score_todo, [s.lm.device for s in states], states, todos, spans)
    by_key = {(c.text, c.eos): c for c in candidates}
    scored = []
    for state, todo, result in zip(states, todos, results):
        rows = dict(zip(todo, result))
        for key, row in rows.items():
            by_key[key].nll[state.name] = row.nll
            by_key[key].tokens[state.name] = len(row.scored_ids)
            by_key[key].token_ids[state.name] = row.scored_ids
            by_key[key].context_len[state.name] = row.span_start
        scored.append(rows)
    return scored


def _commit_own(state: ModelState, span: Span) -> None:
    """The winner is this model's own span: its KV is already computed, keep it."""
    state.ids = state.ids + span.token_ids
    if span.cache is not state.cache:  # a branch row; the main cache's lookahead is stale
        state.cache = kv.select_row(span.cache, span.row, len(state.ids))
        state.lookahead, state.lookahead_dists = [], []
    state.next_logprobs = span.next_logprobs


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
