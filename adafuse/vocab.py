"""Per-tokenizer tables computed once at load: which tokens start a word, which end the text,
which may be proposed at all.

A word ends before a token whose text begins with whitespace (space, newline, tab, ...) or at
EOS. Token texts are read by decoding each token after a fixed anchor token and stripping the
anchor's text, which works the same for byte-level BPE (where a leading space is `Ġ`) and
SentencePiece (where it is `▁` and some decoders strip it at the start of a text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

# Added tokens that are markers, not text: the ones the tokenizer flags special, and marker-shaped
# ones it does not flag (Gemma-3's <start_of_image>, <end_of_image> and [multimodal], Qwen's
# <tool_call>). Gemma's other added tokens, HTML tags and runs of newlines, are text and stay.
_MARKER = re.compile(r"^(</?[a-z]+(_[a-z]+)+>|\[[a-z_]+\])$")


@dataclass
class Vocab:
    size: int                      # rows of the model's logits (may exceed len(tokenizer))
    n_tokens: int                  # ids the tokenizer can decode; logits past it are padding
    starts_word: torch.Tensor      # bool [size]: token text begins with whitespace
    eos_ids: tuple[int, ...]       # every id that ends generation
    is_eos: torch.Tensor           # bool [size]
    anchor_ids: list[int]          # a context for decoding single tokens (see decode_suffix)
    proposable: torch.Tensor       # bool [size]: text tokens and EOS; never padding or control tokens
    texts: tuple[str, ...]         # [n_tokens]: each token's text after the anchor ("\ufffd" in a
                                   # byte of a character split across tokens)

    def to(self, device) -> "Vocab":
        return Vocab(self.size, self.n_tokens, self.starts_word.to(device), self.eos_ids, self.is_eos.to(device),
                     self.anchor_ids, self.proposable.to(device), self.texts)

    def for_choosing(self, logprobs: torch.Tensor) -> torch.Tensor:
        """`logprobs` with the tokens that may not be proposed at -inf, for picking tokens (argmax,
        top-k, the margin). Scores keep the model's own distribution, unmasked."""
        return logprobs.masked_fill(~self.proposable, float("-inf"))


def control_ids(tokenizer) -> set[int]:
    ids = {int(i) for i in tokenizer.all_special_ids}
    for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if token.special or _MARKER.match(token.content):
            ids.add(int(i))
    return ids


def build_vocab(tokenizer, logits_size: int, eos_ids) -> Vocab:
    anchor_ids = tokenizer.encode("a", add_special_tokens=False)[-1:]
    anchor_text = tokenizer.decode(anchor_ids)
    n = min(len(tokenizer), logits_size)
    texts = tuple(t[len(anchor_text):] for t in tokenizer.batch_decode([anchor_ids + [i] for i in range(n)]))
    starts = torch.zeros(logits_size, dtype=torch.bool)
    starts[:n] = torch.tensor([t[:1].isspace() for t in texts])
    eos_ids = tuple(sorted({int(i) for i in eos_ids if i is not None and 0 <= int(i) < logits_size}))
    is_eos = torch.zeros(logits_size, dtype=torch.bool)
    is_eos[list(eos_ids)] = True
    starts &= ~is_eos
    proposable = torch.zeros(logits_size, dtype=torch.bool)
    proposable[:n] = True
    proposable[[i for i in control_ids(tokenizer) if i < logits_size]] = False
    proposable |= is_eos
    return Vocab(logits_size, n, starts, eos_ids, is_eos, anchor_ids, proposable, texts)


def decode_suffix(tokenizer, context_ids: list[int], new_ids: list[int]) -> str:
    """Text that `new_ids` add after `context_ids` (a few context tokens are enough).

    Decoding the new tokens alone would lose a leading space under SentencePiece decoders that
    strip it, and would split multi-byte characters whose bytes straddle the boundary.
    """
    if not new_ids:
        return ""
    context = list(context_ids[-4:])
    base = tokenizer.decode(context) if context else ""
    full = tokenizer.decode(context + list(new_ids))
    if full.startswith(base):
        return full[len(base):]
    # A character split across the boundary decodes differently with and without its tail:
    # fall back to the longest common prefix.
    k = 0
    while k < min(len(base), len(full)) and base[k] == full[k]:
        k += 1
    return full[k:]
