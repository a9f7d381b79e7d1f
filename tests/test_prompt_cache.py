"""PromptCache: a run of prompts that share leading tokens prefills them once, and decodes the same."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import adafuse
from adafuse import DecodeConfig, PromptCache
from adafuse.state import start

SHOTS = ("Question: what is the capital of France?\nAnswer: Paris\n\n"
         "Question: who wrote Hamlet?\nAnswer: William Shakespeare\n\n")
QUESTIONS = ["Question: what is the largest planet?\nAnswer:", "Question: who painted the Mona Lisa?\nAnswer:"]


def _nlls(trace):
    return [c.nll[m] for r in trace.rounds for c in r.candidates for m in c.nll]


def test_shared_prefix_is_prefilled_once_and_decoding_is_unchanged(lms):
    cfg = DecodeConfig(max_new_tokens=10, stop=("\n",))
    cache = PromptCache()
    prompt_ids = [lm.tokenizer(SHOTS + q).input_ids for lm in lms for q in QUESTIONS]
    shot_ids = [lm.tokenizer(SHOTS).input_ids for lm in lms]
    plain, cached = [], []
    for q in QUESTIONS:
        for mode in ("adafuse", "fixed"):       # item-major, as an evaluation runs
            plain.append(adafuse.generate(lms, SHOTS + q, replace(cfg, mode=mode)))
            cached.append(adafuse.generate(lms, SHOTS + q, replace(cfg, mode=mode),
                                           prompt_cache=cache))
    for a, b in zip(plain, cached):
        assert a.text == b.text and a.text.strip()
        assert [r.chosen for r in a.rounds] == [r.chosen for r in b.rounds]
        assert max(abs(x - y) for x, y in zip(_nlls(a), _nlls(b))) < 1e-4
        assert a.stats.forward_passes == b.stats.forward_passes
    # First call: everything prefilled. Same prompt again (second method): all but the last token
    # reused. Next question: the shots (up to where the two prompts' tokens part) reused.
    smol_q1, smol_q2, gemma_q1, gemma_q2 = prompt_ids
    def common(a, b):
        return next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert common(smol_q1, smol_q2) >= len(shot_ids[0]) - 1
    expected_reused = ((len(smol_q1) - 1) + common(smol_q1, smol_q2) + (len(smol_q2) - 1)
                       + (len(gemma_q1) - 1) + common(gemma_q1, gemma_q2) + (len(gemma_q2) - 1))
    assert cache.reused_tokens == expected_reused
    assert cache.reused_tokens + cache.prefilled_tokens == 2 * sum(len(ids) for ids in prompt_ids)


def test_an_unrelated_prompt_reuses_nothing_and_a_cut_prompt_keeps_one_token_to_run(smol):
    cache = PromptCache()
    cfg = DecodeConfig(mode="greedy", max_new_tokens=4)
    adafuse.generate([smol], SHOTS + QUESTIONS[0], cfg, prompt_cache=cache)
    before = cache.reused_tokens
    # The BOS-free SmolLM2 tokenization of "Hello" shares no first token with the shots.
    adafuse.generate([smol], "Hello there", cfg, prompt_cache=cache)
    assert cache.reused_tokens == before
    # A prompt that is a strict prefix of the cached one: all but its last token come from the cache,
    # and the result is the uncached one.
    short = SHOTS.rstrip()
    n = len(smol.tokenizer(short).input_ids)
    adafuse.generate([smol], SHOTS, cfg, prompt_cache=cache)
    before = cache.reused_tokens
    got = adafuse.generate([smol], short, cfg, prompt_cache=cache)
    assert cache.reused_tokens - before == n - 1
    assert got.text == adafuse.generate([smol], short, cfg).text


def test_a_copy_starts_warm_and_what_it_puts_stays_its_own(smol):
    cfg = DecodeConfig(mode="greedy", max_new_tokens=4)
    cache = PromptCache()
    adafuse.generate([smol], SHOTS + QUESTIONS[0], cfg, prompt_cache=cache)
    held = dict(cache.entries)
    copy = cache.copy()
    assert (copy.reused_tokens, copy.prefilled_tokens) == (0, 0)
    got = adafuse.generate([smol], SHOTS + QUESTIONS[1], cfg, prompt_cache=copy)
    assert got.text == adafuse.generate([smol], SHOTS + QUESTIONS[1], cfg).text
    assert copy.reused_tokens >= len(smol.tokenizer(SHOTS).input_ids) - 1     # the shots came warm
    assert cache.entries == held                                             # the original is untouched
    assert copy.entries[id(smol)][1] != cache.entries[id(smol)][1]


GSM8K = json.loads((Path(__file__).parent / "data" / "gsm8k-106-107.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_a_question_prefilled_on_the_cached_examples_reads_as_the_whole_prompt(gemma, device):
    """GSM8K item 107 after item 106, as the harness runs them: the 8-shot examples come from the
    prompt cache and only the question's 65 tokens are prefilled, over 1,469 keys under Gemma's
    sliding-window mask. On an H200 PyTorch's memory-efficient SDPA kernel got that chunk wrong
    (Gemma's next word "Let" at 0.32 instead of "For" at 0.21: issue 15, item 4); batch.safe_attention
    keeps that kernel out. On any device the chunked prefill must give the one-piece distribution."""
    lm = gemma if device == "cpu" else adafuse.load_model("gemma3-270m", device=device, dtype="float32")
    prompt = GSM8K["shared"] + GSM8K["item107"]
    cache = PromptCache()
    start(lm, "gemma", GSM8K["shared"] + GSM8K["item106"], "raw", cache)
    chunked = start(lm, "gemma", prompt, "raw", cache)
    assert (cache.reused_tokens, len(chunked.ids)) == (1404, 1469)   # the shape that went wrong
    whole = start(lm, "gemma", prompt, "raw")
    assert float((chunked.next_logprobs - whole.next_logprobs).abs().max()) < 1e-3
    assert lm.tokenizer.decode([int(whole.next_logprobs.argmax())]) == "For"
