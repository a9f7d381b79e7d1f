"""GaC: token-level ensembling over the union of the models' whole vocabularies.

Yu et al., 2024, "Breaking the Ceiling of the LLM Community by Treating Token Generation as a
Classification for Ensembling" (arXiv 2406.12585, EMNLP 2024 Findings). Each step is a
classification whose classes are the union of the vocabularies:
  1. every model's next-token distribution over its whole vocabulary;
  2. mapped onto the union: a model's probability of a union token is that of its own token with
     that text, 0 where its vocabulary has none (where UniTE would take the first token of its
     tokenization, adafuse/unite.py);
  3. averaged over the models, with equal weights; the most likely union token is appended;
  4. every model appends it: its own token where it has one, as greedy decoding would, otherwise
     its tokenization of the text (re-tokenizing its tail where they merge), as UniTE's commit.
The stored sources give the paper's abstract, not its method section. Two choices are therefore
this implementation's own, and docs/ENGINE.md names them:
  - a token is keyed by its text (vocab.Vocab.texts), so the same word is one class whether a
    byte-level vocabulary spells it "Ġword" or a SentencePiece one "▁word"; EOS is one class;
  - where a vocabulary holds two tokens with one text, their class takes the larger probability,
    so that one model alone decodes exactly its greedy text.
The paper's variant that ensembles only at "key tokens" (the others taken from one model) is not
here. The trace records one round per step: the SHOWN most likely classes as candidates, `nll` =
-log of each model's probability, `score` = -log of the average (lowest wins, as for AdaFuse).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .config import DecodeConfig
from .state import ModelState
from .trace import Candidate, Proposal, Round
from .unite import commit
from .vocab import Vocab

SHOWN = 10   # classes a round's trace keeps, the winner first (of some 300k)


@dataclass
class Union:
    """The union of some vocabularies' texts: class 0 ends the output, every other one is a text."""
    vocabs: tuple[Vocab, ...]            # held, so that the cache's keys (their ids) stay theirs
    classes: list[tuple[str, bool]]      # class -> (text, ends the output)
    token_ids: list[torch.Tensor]        # per vocabulary: long, its tokens that have a class ...
    class_of: list[torch.Tensor]         # ... and that class, position by position
    _on: dict = field(default_factory=dict)   # (vocabulary, device) -> the two tensors there

    def on(self, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (k, str(device))
        if key not in self._on:
            self._on[key] = (self.token_ids[k].to(device), self.class_of[k].to(device))
        return self._on[key]


def build_union(vocabs: tuple[Vocab, ...]) -> Union:
    classes: list[tuple[str, bool]] = [("", True)]
    number: dict[str, int] = {}
    token_ids, class_of = [], []
    for v in vocabs:
        ids, cls = list(v.eos_ids), [0] * len(v.eos_ids)
        # a token that may not be proposed, EOS (class 0), or a byte of a split character is no text class
        text_token = (v.proposable[:v.n_tokens] & ~v.is_eos[:v.n_tokens]).tolist()
        for i, text in enumerate(v.texts):
            if not text_token[i] or not text or "\ufffd" in text:
                continue
            if text not in number:
                number[text] = len(classes)
                classes.append((text, False))
            ids.append(i)
            cls.append(number[text])
        token_ids.append(torch.tensor(ids, dtype=torch.long))
        class_of.append(torch.tensor(cls, dtype=torch.long))
    return Union(tuple(vocabs), classes, token_ids, class_of)


_UNIONS: dict[tuple[int, ...], Union] = {}   # by the vocabularies' ids; a few pairs at most


def union_of(vocabs: list[Vocab]) -> Union:
    """The union of these vocabularies, built once (some 0.2 s for Gemma's 262k tokens)."""
    key = tuple(id(v) for v in vocabs)
    if key not in _UNIONS:
        if len(_UNIONS) >= 8:
            _UNIONS.clear()
        _UNIONS[key] = build_union(tuple(vocabs))
    return _UNIONS[key]


@torch.inference_mode()
def class_probabilities(state: ModelState, union: Union, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(this model's probability of every class, float [classes] on the CPU; the token probabilities,
    [vocabulary] on its device). A class's probability is its largest token's."""
    probs = state.lm.vocab.for_choosing(state.next_logprobs).float().exp()
    ids, cls = union.on(k, probs.device)
    row = torch.zeros(len(union.classes), device=probs.device).scatter_reduce_(0, cls, probs[ids], "amax")
    return row.cpu(), probs


def own_token(union: Union, k: int, probs: torch.Tensor, c: int) -> int | None:
    """The model's token of class `c` with the largest probability, or None where it has none."""
    ids, cls = union.on(k, probs.device)
    mine = ids[cls == c]
    if len(mine) == 0:
        return None
    return int(mine[probs[mine].argmax()])


def gac_round(states: list[ModelState], cfg: DecodeConfig, budgets: list[int], committed: str,
              index: int) -> Round:
    """One GaC step as a round of the trace (the module docstring says how). `budgets` is not
    needed: one token's text is a few tokens at most in any model, and the loop stops at the bound."""
    union = union_of([s.lm.vocab for s in states])
    # 1-2. Each model's distribution over the union's classes.
    per_model = [class_probabilities(s, union, k) for k, s in enumerate(states)]
    rows = torch.stack([row for row, _ in per_model])
    # 3. Averaged; the most likely class wins (the lowest class number among equals).
    mean = rows.mean(0)
    best = int(mean.argmax())
    shown = [best] + [c for c in mean.topk(SHOWN + 1).indices.tolist() if c != best][:SHOWN - 1]
    proposals = []
    for s, row in zip(states, rows):
        top = row.topk(SHOWN)
        texts = [union.classes[c][0] for c in top.indices.tolist()]
        proposals.append(Proposal(s.name, texts, top.values.tolist(), False, texts,
                                  eos=0 in top.indices.tolist()))
    candidates = []
    for c in shown:
        text, eos = union.classes[c]
        cand = Candidate(text, [s.name for s, row in zip(states, rows) if float(row[c]) > 0], eos=eos, words=1)
        for k, (s, (row, probs)) in enumerate(zip(states, per_model)):
            p = float(row[c])
            own = own_token(union, k, probs, c)
            cand.add_score(s.name, -math.log(p) if p > 0 else math.inf, [] if own is None else [own], len(s.ids))
        m = float(mean[c])
        cand.score = -math.log(m) if m > 0 else math.inf
        candidates.append(cand)
    # 4. Commit: every model appends the winner, as its own token where it has one (found above).
    win = candidates[0]
    for s in states:
        own = win.token_ids[s.name]
        ids, at = commit(s, committed, win, own[0] if own else None)
        win.add_score(s.name, win.nll[s.name], ids, at)   # the tokens it went in as
    return Round(index, proposals, candidates, 0)
