"""A step's read of its distribution (adafuse/steps.py) against the plain computation, on the real
models' distributions: the greedy token, its log-prob, the margin p(1) - p(2) from the top two
proposable tokens, and the word-end and EOS flags."""
import pytest
import torch

from adafuse.state import start
from adafuse.steps import read_steps


@pytest.mark.parametrize("which", [0, 1], ids=["smollm2", "gemma3"])
def test_read_steps_equals_the_plain_computation(lms, which):
    lm = lms[which]
    prompts = ["Question: what is the capital of australia\nAnswer:", "The three primary colours are",
               "def add(a, b):\n    return"]
    rows = torch.stack([start(lm, "s", p, "raw").next_logprobs for p in prompts])
    rows = torch.cat([rows, torch.log_softmax(torch.randn(2, rows.shape[1]) * 3, -1)])  # flatter ones too
    best, read = read_steps(lm.vocab, rows)
    for r, (token, ends, lp, margin, eos) in enumerate(read.tolist()):
        choosing = lm.vocab.for_choosing(rows[r])
        top = choosing.topk(2)
        assert int(token) == int(best[r]) == int(choosing.argmax()) == int(top.indices[0])
        assert lp == float(rows[r, int(token)])
        assert margin == float((top.values.exp()[0] - top.values.exp()[1]).double())
        assert bool(eos) == bool(lm.vocab.is_eos[int(token)])
        assert bool(ends) == bool(lm.vocab.starts_word[int(token)] or eos)
