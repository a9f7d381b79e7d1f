"""What a decode step's distribution says, read in one device-to-host copy.

Every copy from the GPU waits for it, and the GPU then waits for the host's next launch: a round
pays one such gap per copy. So whatever the host needs from a distribution (the greedy token,
whether it ends a word, its log-prob, and the margin p(1) - p(2) in case the next word starts
there) is read together, by the step that made the distribution (propose.complete_words) or by
the scoring forward that made it (score.score_ahead), never by a copy of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .vocab import Vocab


@dataclass
class WordStart:
    """What a distribution says at a word start: the margin p(1) - p(2) and the argmax over
    proposable tokens, with the argmax's log-probability and whether it is EOS (complete_words
    needs both to begin)."""
    margin: float
    token: int
    token_on_device: torch.Tensor   # [1], the argmax where the logits are: the first step's input
    logprob: float
    eos: bool


def read_steps(vocab: Vocab, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of `logprobs` [rows, V]: the argmax over proposable tokens (on the device), and
    [token, ends a word (starts one, or is EOS), its log-prob, the margin p(1) - p(2), is EOS] as
    float64 on the device (which holds ids and float32 values exactly), for the caller to copy
    with whatever else it reads."""
    choosing = vocab.for_choosing(logprobs)
    best = choosing.argmax(-1)
    top = choosing.gather(1, best[:, None])[:, 0]                         # the argmax's log-prob
    second = choosing.scatter(1, best[:, None], float("-inf")).amax(-1)   # the runner-up's
    eos = vocab.is_eos[best]
    read = torch.stack([best.double(), (vocab.starts_word[best] | eos).double(), top.double(),
                        (top.exp() - second.exp()).double(), eos.double()], dim=1)
    return best, read


def start_of(best: torch.Tensor, r: int, token: float, lp: float, margin: float, eos: float) -> WordStart:
    """Row r of a read_steps result as a WordStart."""
    return WordStart(margin, int(token), best[r:r + 1], lp, bool(eos))


def word_start(vocab: Vocab, logprobs: torch.Tensor) -> WordStart:
    """The WordStart of one distribution [V] that no step read (the prompt's, UniTE's commits)."""
    best, read = read_steps(vocab, logprobs[None])
    token, _, lp, margin, eos = read[0].tolist()
    return start_of(best, 0, token, lp, margin, eos)
