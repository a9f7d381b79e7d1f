"""Scoring other models' candidate spans: mean per-token NLL in this model's own tokenization.

All candidates a model did not propose itself are scored in one batched forward over a fanned-out
cache. A candidate is tokenized as part of the whole text (prompt + committed output + candidate),
so the model sees exactly the ids its tokenizer would produce. Where that tokenization differs from
the ids the model holds near the end (a merge across the boundary), the row starts at the common
prefix: the re-tokenized tail is scored with the candidate and, if it wins, replaces the old tail.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import kv
from .state import ModelState, forward
from .steps import WordStart, read_steps, start_of


@dataclass
class ScoredRow:
    """One candidate as this model would commit it."""
    ids: list[int]                    # the model's whole sequence if the candidate wins (EOS excluded)
    span_start: int                   # first position whose token belongs to the scored span
    scored_ids: list[int]             # the tokens in the mean (EOS included)
    nll: float
    cache: object                     # batched cache holding the row's KV ...
    row: int                          # ... in this row
    next_logprobs: torch.Tensor | None
    # Set when the row lies inside the model's own tokens: those past it stay as lookahead.
    lookahead: tuple[list[int], list] | None = None
    next_start: WordStart | None = None   # what next_logprobs says at the next word start


@dataclass
class Ahead:
    """A model's next greedy token past its own span, run as one more row of its scoring forward
    (which runs anyway): if the span wins, the row holds the span and the token, and the
    distribution after the token is known, so the next round's first step is lookahead, not a
    forward. If another candidate wins, the row is dropped."""
    token: int
    dist: torch.Tensor    # log p(next | ids + span + token)
    cache: object         # the scoring cache ...
    row: int              # ... and the row holding ids + span + token


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def encode_candidate(state: ModelState, committed: str, text: str) -> tuple[list[int], int]:
    """(the model's ids for prompt + committed + text, where they first differ from its own ids)."""
    full = state.encode(committed, text)
    return full, common_prefix_len(full, state.ids)


def score(state: ModelState, committed: str, candidates: list[tuple[str, bool]],
          own_ids: list[int] = (), own_dists: list[torch.Tensor] = ()) -> list[ScoredRow]:
    """Score (text, eos) candidates given the committed output, in at most one batched forward.

    `own_ids` are tokens this model generated this round whose KV its main cache already holds,
    `own_dists` the distribution after each. A candidate that starts with the same tokens (one
    model stopped after " Jane", the other went on to " Jane Austen") is scored from there: the
    shared tokens' log-probs are already known, and a candidate that lies wholly inside them needs
    no forward at all.
    """
    return score_ahead(state, committed, candidates, own_ids, own_dists)[0]


@torch.inference_mode()
def score_ahead(state: ModelState, committed: str, candidates: list[tuple[str, bool]],
                own_ids: list[int] = (), own_dists: list[torch.Tensor] = (),
                ahead_token: int | None = None) -> tuple[list[ScoredRow], Ahead | None]:
    """score(), and with `ahead_token` (the greedy token after `own_ids`, the model's own span) one
    more row in the same forward: ids + own_ids + that token (Ahead). Only when a forward runs
    anyway: the row never costs a forward of its own."""
    n = len(state.ids)
    eos_id = state.lm.eos_id
    extended = state.ids + list(own_ids)
    rows = []
    for text, eos in candidates:
        full, p = encode_candidate(state, committed, text)
        if p < 1:
            raise RuntimeError(f"{state.name}: candidate shares no token with the prompt")
        rows.append((full, p, full + ([eos_id] if eos else []), eos))
    min_p = min(p for _, p, _, _ in rows)
    if min_p == n:
        # Rows share the cache up to `start`, where the first of them leaves the model's own tokens.
        start = min(common_prefix_len(full, extended) for full, _, _, _ in rows)
    else:
        # A boundary re-tokenization: begin one token before the earliest divergence so that its
        # distribution comes out of this forward.
        start = min_p - 1

    def known(j: int) -> torch.Tensor:  # distribution over position j <= start, without a forward
        return state.next_logprobs if j == n else own_dists[j - n - 1]

    batch_rows = [r for r, (_, _, seq, _) in enumerate(rows) if len(seq) > start]
    logprobs, cache = None, state.cache
    ahead_seq = extended + [ahead_token] if batch_rows and ahead_token is not None else None
    if batch_rows:
        inputs = [rows[r][2][start:] for r in batch_rows] + ([ahead_seq[start:]] if ahead_seq else [])
        width = max(len(x) for x in inputs)
        batch = torch.tensor([x + [x[0]] * (width - len(x)) for x in inputs])
        cache = kv.fan_out(state.cache, len(inputs), start)
        # Right padding needs no attention mask: causal attention never looks at later positions.
        logprobs = torch.log_softmax(forward(state, batch, cache, logits_to_keep=width), dim=-1)
    out, nlls = [], []
    for r, (full, p, seq, eos) in enumerate(rows):
        b = batch_rows.index(r) if r in batch_rows else None
        first_computed = min(max(p, start + 1), len(seq))  # positions before it are known
        picked = [known(j)[seq[j]].reshape(1) for j in range(p, first_computed)]
        if first_computed < len(seq):
            pos = torch.arange(first_computed, len(seq), device=logprobs.device) - 1 - start
            picked.append(logprobs[b, pos, torch.tensor(seq[first_computed:], device=logprobs.device)])
        nlls.append(-torch.cat([x.to(picked[0].device) for x in picked]).mean())
        if eos:
            next_lp = None
        elif b is None:
            next_lp = known(len(seq))
        else:
            next_lp = logprobs[b, len(seq) - 1 - start]
        if b is None:
            rest = (extended[len(full):], list(own_dists[len(full) - n:]))
            out.append(ScoredRow(full, p, seq[p:], float("nan"), state.cache, 0, next_lp, rest))
        else:
            out.append(ScoredRow(full, p, seq[p:], float("nan"), cache, b, next_lp))
    _read_rows(state, out, nlls)
    if ahead_seq is None:
        return out, None
    b = len(batch_rows)   # the last row
    return out, Ahead(ahead_token, logprobs[b, len(ahead_seq) - 1 - start], cache, b)


def _read_rows(state: ModelState, out: list[ScoredRow], nlls: list[torch.Tensor]) -> None:
    """Every row's NLL and what its next distribution says at a word start (adafuse/steps.py),
    in one device-to-host copy."""
    nexts = [row for row in out if row.next_logprobs is not None]
    values = torch.stack([x.to(nlls[0].device) for x in nlls]).double()
    best = None
    if nexts:
        best, read = read_steps(state.lm.vocab, torch.stack([row.next_logprobs for row in nexts]))
        values = torch.cat([values, read.flatten().to(values.device)])
    values = values.tolist()
    for row, nll in zip(out, values):
        row.nll = nll
    for i, row in enumerate(nexts):
        token, _, lp, margin, eos = values[len(out) + 5 * i: len(out) + 5 * i + 5]
        row.next_start = start_of(best, i, token, lp, margin, eos)


def commit_scored(state: ModelState, row: ScoredRow) -> None:
    state.ids = list(row.ids)
    state.next_logprobs, state.next_start = row.next_logprobs, row.next_start
    if row.lookahead is not None:  # inside the model's own tokens: keep the rest for later
        state.lookahead, state.lookahead_dists = row.lookahead
    else:
        state.cache = kv.select_row(row.cache, row.row, len(row.ids))
        state.lookahead, state.lookahead_dists = [], []
