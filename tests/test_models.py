"""Vocabulary tables and the one-time GGUF conversion of the embedded models."""
import os

import torch

import adafuse
from adafuse.models import converted_dir, ensure_converted, is_cached
from adafuse.vocab import decode_suffix


def test_word_starts_for_both_tokenizer_families(lms):
    for lm in lms:
        tok, v = lm.tokenizer, lm.vocab
        ids = tok("Hello world,\nthe\tcafé 1234 東京 x", add_special_tokens=False).input_ids
        starts = [decode_suffix(tok, ids[:i], [ids[i]])[:1].isspace() for i in range(1, len(ids))]
        assert starts == v.starts_word[ids[1:]].tolist()
        assert v.starts_word[tok(" world", add_special_tokens=False).input_ids[0]]
        assert not v.starts_word[tok("world", add_special_tokens=False).input_ids[0]]
        assert v.is_eos[lm.eos_id] and not v.starts_word[lm.eos_id]
        assert decode_suffix(tok, ids[:3], ids[3:]) + "" == tok.decode(ids)[len(tok.decode(ids[:3])):]


def test_conversion_writes_a_cache_that_decodes_like_the_gguf(tmp_path, monkeypatch, smol, capfd):
    monkeypatch.setenv("ADAFUSE_CACHE", str(tmp_path))
    assert not is_cached("smollm2-135m-instruct")
    messages = []
    path = ensure_converted("smollm2-135m-instruct", progress=lambda m, f: messages.append((m, f)))
    assert path == converted_dir("smollm2-135m-instruct") and str(path).startswith(str(tmp_path))
    assert is_cached("smollm2-135m-instruct") and (path / "config.json").exists()
    assert messages[0][1] == 0.0 and messages[-1][1] == 1.0 and any("tokenizer" in m for m, _ in messages)
    terminal = capfd.readouterr().err                  # the same steps on the terminal, given a UI callback
    assert all(m in terminal for m, _ in messages) and "adafuse: [ 10%] smollm2-135m-instruct: converting" in terminal
    assert not [p for p in os.listdir(path.parent) if ".tmp" in p]
    fresh = adafuse.load_model("smollm2-135m-instruct", device="cpu")
    prompt = "The capital of France is"
    a = adafuse.generate([fresh], prompt, adafuse.DecodeConfig(max_new_tokens=10))
    b = adafuse.generate([smol], prompt, adafuse.DecodeConfig(max_new_tokens=10))
    assert a.text == b.text and a.text.strip()
    # a second call finds the cache and does not convert again
    again = []
    ensure_converted("smollm2-135m-instruct", progress=lambda m, f: again.append(m))
    assert again == []
    assert fresh.dtype == torch.float32
