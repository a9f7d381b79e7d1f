"""One round of a method, as the steps of docs/ENGINE.md ("One round"): propose, union, score,
choose, commit. Each step is a plain function over the models' states; a method is a round function
built from them,

    round_fn(states, cfg, budgets, committed, index) -> Round

listed in decode.ROUNDS under its DecodeConfig.mode. A new method is a new round function that
reuses the steps it shares and replaces the ones it does not (a token-level method proposes top-k
tokens, a span-level one chooses by its own rule); no other method's code changes.

The main-cache invariant. Every step relies on what each model's main cache (`state.cache`) holds:

- between rounds, the KV of exactly `state.ids + state.lookahead`, and `state.next_logprobs` is
  the distribution after `state.ids` (propose reads it, and takes lookahead tokens without a
  forward: propose._take_lookahead);
- within a round, once the model has proposed, the KV of `state.ids`, then the first `shared`
  tokens of its spans, then what is left of `state.lookahead` (score_missing scores from there);
  branch rows live in a cache of their own, whose row b holds `state.ids` + span b.

Each commit keeps it: a span on the main cache appends its tokens to `ids` in front of the
lookahead left; a branch row or a scoring row replaces the cache by that row, cut to the new
`ids`, and drops the lookahead; a span whose scoring forward also ran its next greedy token
(score.Ahead, only when no lookahead was left) replaces the cache by that row, which holds the new
`ids` and the token, now the lookahead. tests/test_round_invariants.py checks it after every round of
every mode on the real pair, against a fresh forward.
"""
from __future__ import annotations

from .config import DecodeConfig, Execution
from .parallel import map_models
from .propose import Span, commit_span, propose
from .score import Ahead, ScoredRow, commit_scored, score_ahead
from .state import ModelState
from .stops import candidate_key, find_stop
from .trace import Candidate, Proposal, Round

Key = tuple[str, bool]       # a candidate: its text, and whether it ends the output
Commit = Span | ScoredRow    # how one model commits a candidate: its own span, or a row it scored


def adafuse_round(states: list[ModelState], cfg: DecodeConfig, budgets: list[int], committed: str,
                  index: int) -> Round:
    """AdaFuse, and its fixed-length and greedy variants (they differ only in what propose takes):
    the lowest mean NLL over models wins and every model commits it."""
    proposals, spans = propose_all(states, cfg, budgets)
    candidates, own = union(states, spans, committed, cfg)
    commits, aheads = score_missing(states, spans, candidates, own, committed, cfg.execution)
    best = choose_lowest_mean(candidates)
    commit_all(states, commits, candidates[best], aheads)
    return Round(index, proposals, candidates, best)


def propose_all(states: list[ModelState], cfg: DecodeConfig,
                budgets: list[int]) -> tuple[list[Proposal], list[list[Span]]]:
    """1. Propose: each model's greedy words while confident, B branches where it is not
    (propose.py). Extends each main cache with the model's span tokens."""
    results = map_models(lambda state, budget: propose(state, cfg, budget), cfg.execution, states, budgets)
    return [proposal for proposal, _ in results], [spans for _, spans in results]


def union(states: list[ModelState], spans: list[list[Span]], committed: str,
          cfg: DecodeConfig) -> tuple[list[Candidate], list[dict[Key, Span]]]:
    """2. Union: the distinct candidates, by (text, ends the output), in proposal order; and for
    each model the spans whose NLL it already has from proposing them, recorded on the candidates.
    A span that reaches a stop string becomes its text up to the stop plus the end marker
    (adafuse/stops.py); its tokens changed, so its proposer scores it like every other model and it
    is not among the proposer's own."""
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
                cand.add_score(state.name, span.nll, span.token_ids + ([state.lm.eos_id] if span.eos else []),
                               len(state.ids))
        own.append(mine)
    return candidates, own


def score_missing(states: list[ModelState], spans: list[list[Span]], candidates: list[Candidate],
                  own: list[dict[Key, Span]], committed: str,
                  execution: Execution) -> tuple[list[dict[Key, Commit]], list[Ahead | None]]:
    """3. Score: each model scores, in one batched forward, every candidate it has no NLL for
    (score.py), recorded on the candidates in model order. Returns, per model, how it commits each
    candidate (its own span or the row it scored) and, where its scoring forward also ran its own
    span's next greedy token, that row (score.Ahead) for a commit of its own span."""
    todos = [[(c.text, c.eos) for c in candidates if (c.text, c.eos) not in mine] for mine in own]

    def score_todo(state, todo, model_spans):
        if not todo:
            return [], None
        main = model_spans[0]  # every span of a model shares its main-cache tokens
        # The main-cache invariant within a round (module docstring): ids, the spans' shared
        # tokens, then the lookahead left; scoring starts from those without a forward.
        own_ids = main.token_ids[:main.shared] + state.lookahead
        # Look one token ahead only for a single span on the main cache with no lookahead left
        # past it (that token's KV would be there already), and within the context window.
        ahead = (main.next_token if len(model_spans) == 1 and main.cache is state.cache and not state.lookahead
                 and len(state.ids) + len(own_ids) + 1 < state.lm.context_length else None)
        return score_ahead(state, committed, todo, own_ids, main.dists[:main.shared] + state.lookahead_dists, ahead)

    results = map_models(score_todo, execution, states, todos, spans)
    by_key = {(c.text, c.eos): c for c in candidates}
    commits = []
    for state, mine, todo, (rows, _) in zip(states, own, todos, results):
        for key, row in zip(todo, rows):
            by_key[key].add_score(state.name, row.nll, row.scored_ids, row.span_start)
        commits.append({**mine, **dict(zip(todo, rows))})
    for c in candidates:
        c.order_models([s.name for s in states])   # model order, not arrival order
    return commits, [ahead for _, ahead in results]


def choose_lowest_mean(candidates: list[Candidate]) -> int:
    """4. Choose: the fused score is the mean over models of each model's mean per-token NLL; the
    lowest wins, ties going to the first proposed. Returns the winner's index."""
    for c in candidates:
        c.score = sum(c.nll.values()) / len(c.nll)
    return min(range(len(candidates)), key=lambda i: (candidates[i].score, i))


def commit_all(states: list[ModelState], commits: list[dict[Key, Commit]], win: Candidate,
               aheads: list[Ahead | None]) -> None:
    """5. Commit: every model appends the winner, keeping the KV it already computed for it (and,
    for its own span, the next token its scoring forward ran: score.Ahead)."""
    key = (win.text, win.eos)
    for state, ways, ahead in zip(states, commits, aheads):
        way = ways[key]
        if isinstance(way, Span):
            commit_span(state, way, ahead)
        else:
            commit_scored(state, way)
