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
    full = state.encode(committed + text)
    return full, common_prefix_len(full, state.ids)


@torch.inference_mode()
def score(state: ModelState, committed: str, candidates: list[tuple[str, bool]]) -> list[ScoredRow]:
    """Score (text, eos) candidates given the committed output; one batched forward."""
    n = len(state.ids)
    eos_id = state.lm.eos_id
    rows = []
    for text, eos in candidates:
        full, p = encode_candidate(state, committed, text)
        if p < 1:
            raise RuntimeError(f"{state.name}: candidate shares no token with the prompt")
        rows.append((full, p, full + ([eos_id] if eos else []), eos))
    # Rows share the cache up to `start`. Normally start = n and the first span token's log-prob is
    # the committed distribution we already hold; after a boundary re-tokenization the rows begin
    # one token before the earliest divergence so that its distribution comes out of this forward.
    min_p = min(p for _, p, _, _ in rows)
    start = n if min_p == n else min_p - 1
    inputs = [seq[start:] for _, _, seq, _ in rows]
    width = max(len(x) for x in inputs)
    pad = inputs[0][0]
    batch = torch.tensor([x + [pad] * (width - len(x)) for x in inputs])
    cache = kv.fan_out(state.cache, len(rows), start)
    # Right padding needs no attention mask: causal attention never looks at later positions.
    logprobs = torch.log_softmax(forward(state, batch, cache, logits_to_keep=width), dim=-1)
    out = []
    for r, ((full, p, seq, eos), x) in enumerate(zip(rows, inputs)):
        targets = torch.tensor(seq[p:], device=logprobs.device)
        # the distribution over position j comes from output j - 1 - start (or the held one)
        pos = torch.arange(p, len(seq), device=logprobs.device) - 1 - start
        picked = []
        if start == n and p == n:
            picked.append(state.next_logprobs[targets[0]])
            targets, pos = targets[1:], pos[1:]
        picked.append(logprobs[r, pos, targets])
        lp = torch.cat([t.reshape(-1) for t in picked])
        nll = float(-lp.mean())
        next_lp = None if eos else logprobs[r, len(x) - 1]
        out.append(ScoredRow(full, p, seq[p:], nll, cache, r, next_lp))
    return out


def commit_scored(state: ModelState, row: ScoredRow) -> None:
    state.ids = list(row.ids)
    state.cache = kv.select_row(row.cache, row.row, len(row.ids))
    state.next_logprobs = row.next_logprobs
