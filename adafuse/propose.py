"""One model's proposal for a round: greedy words while confident, branching where uncertain.

The margin p(1) - p(2) at a word start is read from the distribution that the forward ending the
previous word already produced, so it costs no forward of its own. Branches (B > 1) run as one
batched forward per step over a fanned-out copy of the cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import kv
from .config import DecodeConfig
from .score import Ahead
from .steps import WordStart, read_steps, start_of, word_start
from .state import ModelState, forward
from .trace import Proposal
from .vocab import decode_suffix

# A "word" with no whitespace for this many tokens (a URL, CJK text) is cut: the round ends
# there and the next one carries on from the same tokens, so greedy output is unchanged.
MAX_WORD_TOKENS = 32


@dataclass
class Span:
    """A span in its proposer's own tokens, with where its KV lives for a cheap commit."""
    text: str
    token_ids: list[int]          # excluding EOS
    token_logprobs: list[float]   # one per token, EOS included when `eos`
    eos: bool
    words: int
    cache: object                 # the cache holding this span's KV ...
    row: int                      # ... in this batch row
    next_logprobs: torch.Tensor | None   # distribution after the span (None after EOS)
    dists: list = field(default_factory=list)   # distribution after each of token_ids
    shared: int = 0               # leading tokens whose KV is in the model's main cache
    next_start: WordStart | None = None   # what next_logprobs says at the next word start, if read

    @property
    def nll(self) -> float:
        return -sum(self.token_logprobs) / len(self.token_logprobs)

    @property
    def next_token(self) -> int | None:
        """The greedy token after the span (the next word's first), if known."""
        return None if self.next_start is None else self.next_start.token


@dataclass
class Word:
    tokens: list[int]
    logprobs: list[float]
    eos: bool
    next_logprobs: torch.Tensor | None
    row: int
    dists: list = field(default_factory=list)   # distribution after each token
    next_start: WordStart | None = None   # what next_logprobs says (its argmax: the next word's first token)


def complete_words(state: ModelState, cache, first_logprobs: torch.Tensor, firsts: list[int],
                   budget: int, reuse: bool = False, start: WordStart | None = None) -> list[Word]:
    """Greedily complete one word per first token, all rows in one batched forward per step.

    A row ends before a token that starts with whitespace, at EOS, at `budget` tokens or at
    MAX_WORD_TOKENS. Its last token is always forwarded, so its next-word distribution is known.
    `reuse` (the single greedy row on the main cache): take tokens from `state.lookahead` while
    they match instead of forwarding them again. `start` (that row's WordStart) already holds its
    first token's log-probability and EOS flag: no copy is needed to begin.
    """
    vocab = state.lm.vocab
    rows = len(firsts)
    if start is not None:
        current, first_lp, first_eos = start.token_on_device, [start.logprob], [float(start.eos)]
    else:
        current = torch.tensor(firsts, device=state.lm.device)
        # One device-to-host copy per step for all rows (float64 holds ids and float32 values exactly).
        first_lp, first_eos = torch.stack([first_logprobs[current].double(), vocab.is_eos[current].double()]).tolist()
    words = [Word([f], [first_lp[r]], bool(first_eos[r]), None, r) for r, f in enumerate(firsts)]
    live = [not w.eos for w in words]
    if not any(live):
        return words
    limit = min(budget, MAX_WORD_TOKENS)
    current_ids = list(firsts)
    while True:
        known = _take_lookahead(state, cache, current_ids[0]) if reuse else None
        if known is not None:
            logprobs = known[None]
        else:
            logprobs = torch.log_softmax(forward(state, current[:, None], cache, logits_to_keep=1)[:, -1], dim=-1)
        nxt, read = read_steps(vocab, logprobs)
        read = read.tolist()
        nxt_l = [int(token) for token, *_ in read]
        for r in range(rows):
            if not live[r]:
                continue
            w = words[r]
            w.dists.append(logprobs[r])
            token, ends, lp, margin, eos = read[r]
            if ends or len(w.tokens) >= limit:
                live[r], w.next_logprobs, w.next_start = False, logprobs[r], start_of(nxt, r, token, lp, margin, eos)
            else:
                w.tokens.append(nxt_l[r])
                w.logprobs.append(lp)
        if not any(live):
            return words
        current, current_ids = nxt, nxt_l  # finished rows keep stepping on junk; never read


def _take_lookahead(state: ModelState, cache, token: int):
    """The distribution after `token` if it is the next lookahead token; else drop the lookahead
    (crop its KV) and return None."""
    if not state.lookahead:
        return None
    # the main cache holds ids, this round's tokens so far, then the lookahead (rounds.py)
    if state.lookahead[0] == token:
        state.lookahead.pop(0)
        return state.lookahead_dists.pop(0)
    kv.crop(cache, kv.cache_len(cache) - len(state.lookahead))
    state.lookahead, state.lookahead_dists = [], []
    return None


def propose(state: ModelState, cfg: DecodeConfig, budget: int) -> tuple[Proposal, list[Span]]:
    """Extend `state.cache` with this model's span(s); return the trace record and the spans."""
    lm = state.lm
    target = {"adafuse": cfg.max_words, "fixed": cfg.fixed_words, "greedy": 1}[cfg.mode]
    tokens: list[int] = []
    logprobs: list[float] = []
    words: list[str] = []
    margins: list[float] = []
    dists: list[torch.Tensor] = []    # distribution after each token (lets scoring reuse them)
    dist, start = state.next_logprobs, state.next_start
    branched = eos = False
    branch_words: list[Word] = []
    branch_cache = None
    while len(words) < target and len(tokens) < budget:
        start = start or word_start(lm.vocab, dist)
        m, best = start.margin, start.token
        margins.append(m)
        uncertain = cfg.mode == "adafuse" and m < cfg.tau
        if uncertain and cfg.branches > 1:
            branched = True
            branch_cache, branch_words = _branch(state, state.ids + tokens, dist, cfg.branches,
                                                 budget - len(tokens))
            break
        (word,) = complete_words(state, state.cache, dist, [best], budget - len(tokens), reuse=True, start=start)
        if word.eos:  # EOS at a word start ends the span; it is not a word
            logprobs.append(word.logprobs[0])
            eos = True
            break
        words.append(decode_suffix(lm.tokenizer, state.ids + tokens, word.tokens))
        tokens += word.tokens
        logprobs += word.logprobs
        dists += word.dists
        dist, start = word.next_logprobs, word.next_start
        if uncertain:  # B = 1: the branch is the greedy word; the round stops here
            branched = True
            break

    prefix_text = "".join(words)
    if not branch_words:
        span = Span(prefix_text, tokens, logprobs, eos, len(words), state.cache, 0, None if eos else dist,
                    dists, len(tokens), None if eos else start)
        return Proposal(state.name, words, margins, branched, [span.text], eos), [span]

    spans = []
    for w in branch_words:
        w_tokens = [] if w.eos else w.tokens
        w_text = decode_suffix(lm.tokenizer, state.ids + tokens, w_tokens)
        spans.append(Span(prefix_text + w_text, tokens + w_tokens, logprobs + w.logprobs, w.eos,
                          len(words) + (0 if w.eos else 1), branch_cache, w.row, w.next_logprobs,
                          dists + w.dists, len(tokens), w.next_start))
    top = branch_words[0]
    shown_words = words + ([] if top.eos else [spans[0].text[len(prefix_text):]])
    return Proposal(state.name, shown_words, margins, True, [s.text for s in spans], top.eos), spans


def commit_span(state: ModelState, span: Span, ahead: Ahead | None = None) -> None:
    """The winner is this model's own span: its KV is already computed, keep it. A span on the
    main cache leaves the lookahead past it in place; a branch row replaces the main cache, whose
    lookahead is then stale. `ahead` (score.Ahead: the scoring forward also ran the span's next
    greedy token) replaces the main cache by its row, which holds the span and that token: the
    token becomes the lookahead, so the next round's first step needs no forward."""
    state.ids = state.ids + span.token_ids
    if span.cache is not state.cache:
        state.cache = kv.select_row(span.cache, span.row, len(state.ids))
        state.lookahead, state.lookahead_dists = [], []
    elif ahead is not None:
        state.cache = kv.select_row(ahead.cache, ahead.row, len(state.ids) + 1)
        state.lookahead, state.lookahead_dists = [ahead.token], [ahead.dist]
    state.next_logprobs, state.next_start = span.next_logprobs, span.next_start


def _branch(state: ModelState, context: list[int], dist: torch.Tensor, branches: int, budget: int):
    """The top-B first tokens whose completed words differ in text, completed in one batch.

    Two first tokens can complete to the same text (" P"+"aris" and " Paris"); such a duplicate is
    dropped and the next most likely first token tried, so the model puts forward B distinct
    spans whenever its vocabulary allows. The re-run is rare and keeps all rows in one cache.
    """
    order = state.lm.vocab.for_choosing(dist).topk(min(4 * branches, dist.shape[-1])).indices.tolist()
    base = len(context)  # the main cache may hold lookahead tokens past it
    kept_firsts: list[int] = []
    tried = 0
    while True:
        new = order[tried:tried + branches - len(kept_firsts)]
        tried += len(new)
        firsts = kept_firsts + new
        cache = kv.fan_out(state.cache, len(firsts), base)
        words = complete_words(state, cache, dist, firsts, budget)
        kept, seen = [], set()
        for w in words:
            key = (decode_suffix(state.lm.tokenizer, context, [] if w.eos else w.tokens), w.eos)
            if key not in seen:
                seen.add(key)
                kept.append(w)
        if len(kept) >= branches or tried >= len(order):
            return cache, kept[:branches]
        kept_firsts = [firsts[w.row] for w in kept]
