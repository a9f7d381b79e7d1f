"""The fast path (adafuse/fast.py) on CPU: off by default; forced on, it decodes exactly like the
eager path on SmolLM2 (a Llama-architecture model) in float32, branches and scoring included.
Its CUDA graphs and compiled kernels need a GPU: scripts/bench_gpu.py checks those there."""
import pytest
import torch

import adafuse
from adafuse import DecodeConfig, fast
from adafuse.state import start

PROMPTS = ["Question: what is the capital of australia\nAnswer:",
           "The three primary colours are"]


def test_off_on_cpu_by_default(smol, gemma, monkeypatch):
    monkeypatch.delenv("ADAFUSE_FAST", raising=False)
    assert fast.supported(smol) and not fast.supported(gemma)   # Gemma 3 keeps the eager path
    assert not fast.enabled(smol)
    assert not isinstance(start(smol, "s", PROMPTS[0], "raw").cache, fast.FastCache)


def test_forced_fast_single_model_equals_hf_generate(smol, monkeypatch):
    """Invariant (a) on the fast path: one model, B=1 gives exactly HF's greedy tokens."""
    monkeypatch.setenv("ADAFUSE_FAST", "1")
    for prompt in PROMPTS:
        ids = smol.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = smol.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                      do_sample=False, pad_token_id=smol.eos_id)
        expected = [t for t in out[0, ids.shape[1]:].tolist() if t not in smol.vocab.eos_ids]
        trace = adafuse.generate([smol], prompt, DecodeConfig(max_new_tokens=12))
        committed = [t for r in trace.rounds for t in r.winner.token_ids[smol.name] if t not in smol.vocab.eos_ids]
        assert committed == expected, prompt


@pytest.mark.parametrize("tau,branches", [(0.7, 2), (1.5, 1)])
def test_forced_fast_pair_equals_eager(lms, monkeypatch, tau, branches):
    cfg = DecodeConfig(tau=tau, max_words=3, branches=branches, max_new_tokens=12)
    monkeypatch.setenv("ADAFUSE_FAST", "0")
    eager = adafuse.generate(lms, PROMPTS[0], cfg)
    monkeypatch.setenv("ADAFUSE_FAST", "1")
    fastrun = adafuse.generate(lms, PROMPTS[0], cfg)
    assert fastrun.text == eager.text
    assert fastrun.stats.forward_passes == eager.stats.forward_passes
    for a, b in zip(eager.rounds, fastrun.rounds):
        assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
        for ca, cb in zip(a.candidates, b.candidates):
            for name in ca.nll:
                assert abs(ca.nll[name] - cb.nll[name]) < 1e-4


def test_engine_busy_falls_back_to_eager(smol, monkeypatch):
    """One request at a time owns a model's static buffers; a concurrent one decodes eagerly."""
    monkeypatch.setenv("ADAFUSE_FAST", "1")
    first = start(smol, "a", PROMPTS[0], "raw")
    second = start(smol, "b", PROMPTS[1], "raw")
    assert isinstance(first.cache, fast.FastCache)
    assert not isinstance(second.cache, fast.FastCache)
    del first, second
    assert isinstance(start(smol, "c", PROMPTS[1], "raw").cache, fast.FastCache)
