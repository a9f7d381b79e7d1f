"""Encoding from the last safe boundary (adafuse/tail.py) gives exactly the full encode's ids."""
import dataclasses
import random

import pytest
from transformers import PreTrainedTokenizerFast

import adafuse
from adafuse import DecodeConfig, tail

TEXTS = [
    "Question: who wrote the novel pride and prejudice?\nAnswer: Jane Austen, in 1813.",
    "Die Katze saß auf der Matte.  Danach  ging sie — langsam — nach Hause; l'été est arrivé.",
    "def area(r):\n    return 3.14159 * r ** 2  # circle\n\nprint(area(2), [1, 2, 3])",
    "Natalia sold 48/2 = 24 clips in May. 48 + 24 = 72. The answer is \\boxed{72}.",
    "<b>bold</b> <i> x </i> p> </p> <br> </br> >< b ▁ c ▁▁ d\t e \n f  東京 は 大きい 都市 です。 :) ;-)",
]


def _cases(rng: random.Random, text: str):
    """(prompt, committed, candidate) splits of `text` as a decode meets them: the prompt fixed,
    the committed output growing, candidates with and without a leading space."""
    cut = rng.randrange(5, len(text) // 2)
    pos = cut
    while pos < len(text):
        nxt = min(len(text), pos + rng.randrange(1, 12))
        for cand in (text[pos:nxt], " " + text[pos:nxt].lstrip(), text[pos:nxt] + "  "):
            yield text[:cut], text[cut:pos], cand
        pos = nxt


@pytest.mark.parametrize("which", ["smol", "gemma"])
def test_tail_encode_equals_full_encode(lms, which):
    lm = lms[0] if which == "smol" else lms[1]
    tok = lm.tokenizer
    assert lm.split is not None, f"{lm.name}: its tokenizer has safe boundaries"
    rng = random.Random(0)
    checked = moved = 0
    for text in TEXTS:
        for add_special in (True, False):
            for prompt, committed, cand in _cases(rng, text):
                if not committed:   # a new request: its head starts from the prompt
                    head = tail.start_head(tok, lm.split, prompt, tok(prompt, add_special_tokens=add_special).input_ids, add_special)
                    assert head is not None
                full = tok(prompt + committed + cand, add_special_tokens=add_special).input_ids
                before = head.end
                got, head = tail.encode(tok, lm.split, head, prompt + committed + cand, len(prompt + committed))
                assert got == full, (lm.name, prompt + committed, cand)
                checked += 1
                moved += head.end > before
    assert checked > 300 and moved > 50   # the head did move along the output


def test_gemma_space_after_gt_is_not_a_boundary(gemma):
    """Gemma's vocabulary joins ">" to a following "▁" (">▁</"): a cut there would change the ids,
    so the split excludes it, and encoding across it still matches the full encode."""
    tok = gemma.tokenizer
    assert ">" in gemma.split.not_after
    text = "p> </p>"
    piece = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    assert piece(text[:2]) + piece(text[2:]) != piece(text)   # the cut would be wrong ...
    assert not tail.is_boundary(gemma.split, text, 2)         # ... so it is no boundary
    assert tail.last_boundary(gemma.split, text, len(text)) == -1


def test_a_tokenizer_without_safe_boundaries_encodes_in_full():
    """A SentencePiece-style BPE that prepends "▁" to the whole text (Llama-2's normalizer) would
    get a second "▁" on a tail encoded alone: the load-time probe refuses it."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.train_from_iterator(TEXTS * 20 + tail.PROBES * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw)
    text = "the answer is here"
    assert tok(text).input_ids != tok(text[:10]).input_ids + tok(text[10:]).input_ids
    assert tail.safe_split(tok) is None


def test_decode_is_the_same_with_and_without_tail_encoding(lms):
    """The whole trace (every candidate's ids, NLLs, the text) is the same when every encode is a
    full one."""
    cfg = DecodeConfig(tau=0.7, max_new_tokens=24)
    prompt = "Question: which river flows through Vienna, Budapest and Belgrade?\nAnswer:"
    full = [dataclasses.replace(lm, split=None) for lm in lms]
    with_tail = adafuse.generate(lms, prompt, cfg).to_dict()
    without = adafuse.generate(full, prompt, cfg).to_dict()
    for d in (with_tail, without):
        d["stats"].pop("seconds")
    assert with_tail == without
    assert len(with_tail["rounds"]) >= 4
