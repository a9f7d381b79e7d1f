"""UniTE: token-level ensembling over the union of the models' top-k tokens.

Yao et al., 2024, "Determine-Then-Ensemble: Necessity of Top-k Union for Large Language Model
Ensembling" (arXiv 2410.03777), Section 4 and Algorithm 1. Each step:
  1. every model's top-k next tokens (k = 10 in the paper), as text;
  2. their union, by text: the models' vocabularies are not aligned, only the tokens' texts;
  3. each model's probability of every token of the union: its own probability where the text is
     one of its top-k tokens, otherwise the probability of the first token of its own tokenization
     of that text (the paper's rule for a token its vocabulary splits); each model's probabilities
     are normalised over the union and averaged over the models;
  4. the token with the highest average probability is appended;
  5. every model appends the token's text in its own tokenization (one forward each), re-tokenizing
     its tail where the text merges with it, as AdaFuse's commit does.
The trace records one round per step: the union as candidates, with `nll` = -log of each model's
normalised probability and `score` = -log of the average (lowest wins, as for AdaFuse).
"""
from __future__ import annotations

import math

import torch

from .config import DecodeConfig
from .score import commit_scored, encode_candidate, score
from .state import ModelState, forward
from .trace import Candidate, Proposal, Round
from .vocab import decode_suffix


def top_k(state: ModelState, k: int) -> list[tuple[str, bool, int, float]]:
    """The model's k most likely next tokens that may be proposed: (text, is EOS, id, probability)."""
    probs = state.lm.vocab.for_choosing(state.next_logprobs).exp()
    values, ids = probs.topk(k)
    out = []
    for p, i in zip(values.tolist(), ids.tolist()):
        if p <= 0.0:
            break
        eos = bool(state.lm.vocab.is_eos[i])
        text = "" if eos else decode_suffix(state.lm.tokenizer, state.ids, [i])
        if not eos and (not text or "\ufffd" in text):
            continue   # a byte of a character split across tokens: no text to put in the union
        out.append((text, eos, i, p))
    return out


def stands_on(state: ModelState, committed: str, text: str, eos: bool) -> int | None:
    """The token id that a union token this model did not rank stands on: EOS, or the first token
    of its own tokenization of `text` after the committed output. None where the text merges with
    the model's committed tokens (its tokenization changes an earlier token): such a text has no
    probability at this position without another forward, and counts 0, as a token outside the
    model's view does."""
    if eos:
        return state.lm.eos_id
    full, p = encode_candidate(state, committed, text)
    if p < len(state.ids) or len(full) == p:
        return None
    return full[p]


def probabilities(state: ModelState, committed: str, union: list[Candidate],
                  own: dict[tuple[str, bool], tuple[float, int]]) -> tuple[list[float], list[int | None]]:
    """This model's probability of every union token and the id it stands on: its own top-k entry
    where it ranked the token, otherwise that of the token it stands on (the paper's rule for a
    token its vocabulary splits; 0 where it stands on none), read from the device in one copy for
    all of them (one read per token would wait for the GPU some ten times a step)."""
    probs: list[float | None] = []
    ids: list[int | None] = []
    for c in union:
        p, i = own.get((c.text, c.eos)) or (None, stands_on(state, committed, c.text, c.eos))
        probs.append(p)
        ids.append(i)
    unread = [j for j, (p, i) in enumerate(zip(probs, ids)) if p is None and i is not None]
    if unread:
        for j, value in zip(unread, state.next_logprobs[[ids[j] for j in unread]].exp().tolist()):
            probs[j] = value
    return [0.0 if p is None else p for p in probs], ids


def unite_round(states: list[ModelState], cfg: DecodeConfig, budgets: list[int], committed: str,
                index: int) -> Round:
    """One UniTE step as a round of the trace (the module docstring says how). `budgets` is not
    needed: one token's text is a few tokens at most in any model, and the loop stops at the bound."""
    # 1. Propose: each model's top-k tokens; per model, (text, eos) -> (probability, id).
    tops = [top_k(state, cfg.top_k) for state in states]
    owns = [{(t, e): (p, i) for t, e, i, p in top} for top in tops]
    proposals = [Proposal(s.name, [t for t, _, _, _ in top], [p for _, _, _, p in top], False,
                          [t for t, _, _, _ in top], eos=any(e for _, e, _, _ in top))
                 for s, top in zip(states, tops)]
    # 2. Union, by (text, ends the output), in proposal order.
    candidates: dict[tuple[str, bool], Candidate] = {}
    for s, top in zip(states, tops):
        for text, eos, _, _ in top:
            c = candidates.setdefault((text, eos), Candidate(text, [], eos=eos, words=1))
            c.proposers.append(s.name)
    union = list(candidates.values())
    if not union:
        raise RuntimeError("UniTE: no model has a whole-text token among its top-k; raise top_k")
    # 3. Score: each model's probability of every union token, normalised over the union.
    avg = [0.0] * len(union)
    for s, own in zip(states, owns):
        probs, ids = probabilities(s, committed, union, own)
        total = sum(probs)
        for j, c in enumerate(union):
            q = probs[j] / total if total > 0 else 1.0 / len(union)
            avg[j] += q / len(states)
            c.add_score(s.name, -math.log(q) if q > 0 else math.inf, [] if ids[j] is None else [ids[j]], len(s.ids))
    for c, a in zip(union, avg):
        c.score = -math.log(a) if a > 0 else math.inf
    # 4. Choose: the highest average probability (the lowest score).
    best = min(range(len(union)), key=lambda j: (union[j].score, j))
    win = union[best]
    # 5. Commit: every model appends the winner, as its own token where it ranked it.
    for s, own in zip(states, owns):
        _, own_id = own.get((win.text, win.eos), (None, None))
        ids, at = commit(s, committed, win, own_id)
        win.add_score(s.name, win.nll[s.name], ids, at)   # the tokens it went in as
    return Round(index, proposals, union, best)


@torch.inference_mode()
def commit(state: ModelState, committed: str, win: Candidate, own_id: int | None) -> tuple[list[int], int]:
    """Append the winner to the model; returns (its token ids, how many committed ids they follow).
    The model's own token is appended as it is, as greedy decoding would (so that one model, or
    k = 1 with copies of one model, decodes exactly its greedy text); another model's text goes in
    through this model's tokenization of the output, re-tokenizing its tail where they merge."""
    if own_id is not None and not win.eos:
        at = len(state.ids)
        logits = forward(state, torch.tensor([[own_id]]), state.cache, logits_to_keep=1)
        state.ids = state.ids + [own_id]
        state.next_logprobs, state.next_start = torch.log_softmax(logits[0, -1], dim=-1), None
        return [own_id], at
    row = score(state, committed, [(win.text, win.eos)])[0]
    commit_scored(state, row)
    return row.scored_ids, row.span_start

