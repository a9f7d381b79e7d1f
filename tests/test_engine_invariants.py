"""The invariants of issue #2, each on the real embedded pair."""
import pytest
import torch

import adafuse
from adafuse import DecodeConfig

PROMPTS = [
    "Question: who wrote the novel Pride and Prejudice?\nAnswer:",
    "The three primary colours are",
    "Translate to English: Der Hund schläft im Garten.\nEnglish:",
    "Q: What is 17 + 25?\nA: Let's think step by step.",
    "東京は日本の首都です。大阪は",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]


def hf_greedy(lm, prompt, max_new_tokens):
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, pad_token_id=lm.eos_id)
    new = out[0, ids.shape[1]:].tolist()
    if new and new[-1] in lm.vocab.eos_ids:
        new = new[:-1]
    return new


@pytest.mark.parametrize("which", [0, 1], ids=["smollm2", "gemma3"])
def test_a_single_model_equals_hf_generate(lms, which):
    lm = lms[which]
    for prompt in PROMPTS:
        trace = adafuse.generate([lm], prompt, DecodeConfig(max_new_tokens=24))
        expected = hf_greedy(lm, prompt, 24)
        committed = [t for r in trace.rounds for t in r.winner.token_ids[lm.name] if t not in lm.vocab.eos_ids]
        assert committed == expected, prompt
        assert trace.text == lm.tokenizer.decode(lm.tokenizer(prompt).input_ids + expected)[len(
            lm.tokenizer.decode(lm.tokenizer(prompt).input_ids)):], prompt
        assert trace.stats.new_tokens[lm.name] == len(expected)


def test_b_same_model_twice_equals_greedy(smol):
    for prompt in PROMPTS[:5]:
        single = adafuse.generate([smol], prompt, DecodeConfig(max_new_tokens=20))
        twice = adafuse.generate([smol, smol], prompt, DecodeConfig(max_new_tokens=20))
        assert twice.text == single.text
        assert twice.models == ["smollm2-135m-instruct", "smollm2-135m-instruct#2"]
        # both copies propose the same span, so nothing needs scoring
        assert all(len(r.candidates) == 1 and len(r.winner.proposers) == 2 for r in twice.rounds)


def test_c_tau_above_one_equals_fixed_one_word(lms):
    for prompt in PROMPTS[:3]:
        never_confident = adafuse.generate(lms, prompt, DecodeConfig(tau=1.5, max_new_tokens=20))
        fixed = adafuse.generate(lms, prompt, DecodeConfig(mode="fixed", fixed_words=1, max_new_tokens=20))
        assert never_confident.text == fixed.text
        assert [r.chosen for r in never_confident.rounds] == [r.chosen for r in fixed.rounds]
        assert all(w <= 1 for w in never_confident.words_per_round())


def full_forward_nll(lm, context, span):
    """NLL of `span` after `context`, from one uncached forward over the whole sequence."""
    ids = torch.tensor([context + span])
    with torch.inference_mode():
        logits = lm.model(input_ids=ids, use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[len(context) - 1:-1], dim=-1)
    return float(-logprobs[torch.arange(len(span)), torch.tensor(span)].mean())


@pytest.mark.parametrize("settings", [dict(branches=1), dict(branches=3, tau=0.9)], ids=["B1", "B3"])
def test_d_every_reported_nll_matches_a_full_forward(lms, settings):
    prompt = PROMPTS[0]
    trace = adafuse.generate(lms, prompt, DecodeConfig(max_new_tokens=16, **settings))
    by_name = dict(zip(trace.models, lms))
    ids = {name: lm.tokenizer(prompt).input_ids for name, lm in by_name.items()}
    checked = 0
    for rnd in trace.rounds:
        for cand in rnd.candidates:
            for name, lm in by_name.items():
                context = ids[name][:cand.context_len[name]]
                span = cand.token_ids[name]
                assert cand.tokens[name] == len(span)
                assert cand.nll[name] == pytest.approx(full_forward_nll(lm, context, span), abs=1e-3)
                checked += 1
        for name in by_name:  # follow each model's committed ids, as the engine did
            win = rnd.winner
            ids[name] = ids[name][:win.context_len[name]] + [t for t in win.token_ids[name]
                                                             if t not in by_name[name].vocab.eos_ids]
    assert checked >= 2 * len(trace.rounds)


@pytest.mark.parametrize("which", [0, 1], ids=["smollm2", "gemma3"])
def test_boundary_retokenization_resyncs_to_the_tokenizer(lms, which):
    """"." committed, then a candidate "..": both tokenizers merge "..." into one token, so the row
    must start before the committed "." and the commit must replace it with the merged token."""
    from adafuse import kv
    from adafuse.score import commit_scored, score
    from adafuse.state import start
    lm = lms[which]
    prompt, committed, candidate = "Wait", ".", ".. what?"
    # the model's state after committing "." as output
    state = start(lm, lm.name, prompt + committed, "raw")
    state.prefix = prompt
    assert lm.tokenizer.decode(state.ids[-1:]) == "."
    (row,) = score(state, committed, [(candidate, False)])
    canonical = lm.tokenizer(prompt + committed + candidate).input_ids
    assert row.ids == canonical
    assert row.span_start < len(state.ids)  # the committed "." was re-tokenized with the span
    assert row.nll == pytest.approx(full_forward_nll(lm, canonical[:row.span_start], row.scored_ids), abs=1e-3)
    commit_scored(state, row)
    assert state.ids == canonical
    assert kv.cache_len(state.cache) == len(canonical)


def test_e_words_per_round_and_distinct_branches(lms):
    cfg = DecodeConfig(tau=0.8, max_words=2, branches=3, max_new_tokens=24)
    saw_branch = False
    for prompt in PROMPTS[:3]:
        trace = adafuse.generate(lms, prompt, cfg)
        for rnd in trace.rounds:
            assert all(c.words <= cfg.max_words for c in rnd.candidates)
            for p in rnd.proposals:
                assert len(p.words) <= cfg.max_words
                if p.branched:
                    saw_branch = True
                    assert len(p.spans) == cfg.branches
                    assert len(set(p.spans)) == cfg.branches
                else:
                    assert len(p.spans) == 1
    assert saw_branch


def test_margins_are_probability_gaps(lms):
    trace = adafuse.generate(lms, PROMPTS[1], DecodeConfig(max_new_tokens=12))
    margins = [m for r in trace.rounds for p in r.proposals for m in p.margins]
    assert margins and all(0.0 <= m <= 1.0 for m in margins)
    # a span goes on only past confident word starts, and stops at the first uncertain one
    for r in trace.rounds:
        for p in r.proposals:
            k = len(p.words)
            assert all(m >= 0.7 for m in p.margins[:k - 1])
            if p.branched:
                assert p.margins[k - 1] < 0.7


def test_fused_score_is_mean_and_lowest_wins(lms):
    trace = adafuse.generate(lms, PROMPTS[2], DecodeConfig(max_new_tokens=16))
    for r in trace.rounds:
        for c in r.candidates:
            assert set(c.nll) == set(trace.models)
            assert c.score == pytest.approx(sum(c.nll.values()) / 2)
        assert r.winner.score == min(c.score for c in r.candidates)


def test_scoring_reuses_the_models_own_tokens(smol):
    """A candidate inside the model's own span costs no forward; one extending it costs one
    forward over the extension only; both NLLs equal a full forward's."""
    from adafuse.propose import propose
    from adafuse.score import score
    from adafuse.state import start
    state = start(smol, smol.name, PROMPTS[0], "raw")
    (span,) = propose(state, DecodeConfig(tau=0.0, max_words=3), budget=20)[1]
    assert span.words == 3 and span.shared == len(span.token_ids) == len(span.dists)
    first_word = span.text[: span.text.index(" ", 1)]
    before = state.forward_passes
    (inside,) = score(state, "", [(first_word, False)], span.token_ids, span.dists)
    assert state.forward_passes == before
    (beyond,) = score(state, "", [(span.text + " and more", False)], span.token_ids, span.dists)
    assert state.forward_passes == before + 1
    for row in (inside, beyond):
        context = row.ids[:row.span_start]
        assert row.nll == pytest.approx(full_forward_nll(smol, context, row.scored_ids), abs=1e-3)
