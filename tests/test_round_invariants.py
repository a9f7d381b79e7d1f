"""The main-cache invariant (adafuse/rounds.py), checked after every round of every mode on the real
pair: each model's main cache holds the KV of exactly its committed ids + its lookahead, and the
distributions it holds are a fresh forward's over those ids.

Every round function in decode.ROUNDS is wrapped, so a method added there is checked here too."""
from collections import Counter

import pytest
import torch

import adafuse
from adafuse import DecodeConfig, decode, kv
from adafuse.config import MODES
from adafuse.steps import word_start

PROMPTS = [
    "Question: who wrote the novel Pride and Prejudice?\nAnswer:",
    "The three primary colours are",
]


def fresh_forward(lm, ids):
    """Log-probs after every position of `ids` and the cache, from one forward on an empty cache."""
    cache = kv.new_cache()
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids]), use_cache=True, **{lm.cache_kwarg: cache}).logits[0].float()
    logits[:, lm.vocab.n_tokens:] = float("-inf")   # ids past the tokenizer, as state.forward does
    return torch.log_softmax(logits, dim=-1), cache


def check_main_cache(state, seen: Counter) -> None:
    held = state.ids + state.lookahead
    assert kv.cache_len(state.cache) == len(held), state.name
    assert len(state.lookahead_dists) == len(state.lookahead), state.name
    logprobs, fresh = fresh_forward(state.lm, held)
    n = state.lm.vocab.n_tokens
    # the distributions held: after the committed ids, and after each lookahead token
    if state.next_logprobs is not None:
        torch.testing.assert_close(state.next_logprobs[:n], logprobs[len(state.ids) - 1, :n], atol=2e-3, rtol=0)
    for i, dist in enumerate(state.lookahead_dists):
        torch.testing.assert_close(dist[:n], logprobs[len(state.ids) + i, :n], atol=2e-3, rtol=0)
        assert state.lookahead[i] == int(state.lm.vocab.for_choosing(logprobs[len(state.ids) + i - 1]).argmax())
    # what a step read of next_logprobs (steps.WordStart) is what reading it afresh gives
    if state.next_start is not None:
        again = word_start(state.lm.vocab, state.next_logprobs)
        got = state.next_start
        assert (got.token, got.margin, got.logprob, got.eos) == (again.token, again.margin, again.logprob, again.eos)
        assert int(got.token_on_device) == got.token
        seen["word start read with its step"] += 1
    # the KV itself, in the last layer (which every earlier layer feeds)
    mine, theirs = state.cache.layers[-1], fresh.layers[-1]
    torch.testing.assert_close(mine.keys, theirs.keys, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(mine.values, theirs.values, atol=2e-3, rtol=1e-3)
    seen["checked"] += 1
    seen["with lookahead"] += bool(state.lookahead)


def check_round_record(rnd, models: list[str]) -> None:
    for c in rnd.candidates:  # Candidate.add_score keeps the per-model dicts parallel, in model order
        assert list(c.nll) == list(c.tokens) == list(c.token_ids) == list(c.context_len) == models
        assert all(c.tokens[m] == len(c.token_ids[m]) for m in models)


@pytest.fixture
def seen(monkeypatch) -> Counter:
    """Wraps every mode's round function to check the invariant before the first round and after
    every round; counts what it checked."""
    seen = Counter()

    def checked(mode, round_fn):
        def run(states, cfg, budgets, committed, index):
            if index == 0:
                for s in states:
                    check_main_cache(s, seen)
            before = [s.cache for s in states]
            rnd = round_fn(states, cfg, budgets, committed, index)
            for s in states:
                check_main_cache(s, seen)
            check_round_record(rnd, [s.name for s in states])
            seen[mode] += 1
            seen["replaced cache"] += sum(s.cache is not b for s, b in zip(states, before))
            return rnd
        return run

    for mode, round_fn in list(decode.ROUNDS.items()):
        monkeypatch.setitem(decode.ROUNDS, mode, checked(mode, round_fn))
    return seen


def test_every_mode_has_a_round():
    assert set(decode.ROUNDS) == set(MODES)


@pytest.mark.parametrize("settings, prompt", [(dict(), 0), (dict(branches=3, tau=0.9, max_words=2), 1),
                                              (dict(stop=("\n",)), 0), (dict(mode="fixed", fixed_words=2), 1),
                                              (dict(mode="unite", max_new_tokens=10), 0),
                                              (dict(mode="gac", max_new_tokens=10), 1)],
                         ids=["adafuse", "adafuse-B3", "adafuse-stop", "fixed", "unite", "gac"])
def test_main_cache_after_every_round_of_the_pair(lms, seen, settings, prompt):
    cfg = DecodeConfig(**{"max_new_tokens": 20, **settings})
    rounds = len(adafuse.generate(lms, PROMPTS[prompt], cfg).rounds)
    assert seen[cfg.mode] == rounds > 0
    assert seen["checked"] == 2 * (rounds + 1)   # both models, before the first round and after each


def test_main_cache_after_every_round_of_one_model(lms, smol, seen):
    rounds = 0
    for models, cfg in [([smol], DecodeConfig(mode="greedy", max_new_tokens=12)),
                        (lms[1:], DecodeConfig(mode="greedy", max_new_tokens=12)),
                        ([smol, smol], DecodeConfig(max_new_tokens=20))]:
        rounds += len(adafuse.generate(models, PROMPTS[0], cfg).rounds)
    assert seen["greedy"] + seen["adafuse"] == rounds


def test_the_checks_reach_lookahead_and_replaced_caches(lms, seen):
    """The pair on this prompt leaves lookahead behind (a span ran past the winner) and commits
    rows other than the main cache (another model's candidate won): both sides of each commit;
    and word starts read by the step that made their distribution (adafuse/steps.py)."""
    adafuse.generate(lms, PROMPTS[0], DecodeConfig(max_new_tokens=24))
    assert seen["with lookahead"] > 0
    assert seen["replaced cache"] > 0
    assert seen["word start read with its step"] > 0
