"""Per-model decoding state for one request, the prompt prefill, and the counted forward pass."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import fast, kv
from .errors import InputError
from .models import LM


@dataclass
class ModelState:
    lm: LM
    name: str                     # unique within the request (the same model may appear twice)
    prefix: str                   # the text the prompt ids stand for (raw prompt or chat template)
    add_special: bool             # encode(prefix + text) adds the tokenizer's special tokens (BOS)
    prompt_format: str            # "raw" or "chat" as actually used for this model
    ids: list[int]                # prompt + committed output, in this model's own tokens
    n_prompt: int
    cache: object                 # DynamicCache holding the KV of every id in `ids`
    next_logprobs: torch.Tensor | None   # [V] log p(next token | ids); from the last forward
    forward_passes: int = 0
    # Greedy tokens this model computed past the committed ids in an earlier round (its span ran
    # further than the winner, which was a prefix of it). Their KV sits in `cache` right after
    # `ids`, with the distribution after each: greedy decoding would produce exactly these tokens
    # again, so the next proposal takes them without a forward.
    lookahead: list[int] = field(default_factory=list)
    lookahead_dists: list = field(default_factory=list)

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.n_prompt

    def encode(self, text: str) -> list[int]:
        """This model's tokenization of prompt + `text` (the committed output plus a candidate)."""
        return self.lm.tokenizer(self.prefix + text, add_special_tokens=self.add_special).input_ids


def forward(state: ModelState, input_ids: torch.Tensor, cache, logits_to_keep: int = 0) -> torch.Tensor:
    """One counted forward over `input_ids` [rows, t], extending `cache`; float32 logits."""
    state.forward_passes += 1
    if isinstance(cache, fast.FastCache):  # static KV buffer + CUDA graphs (adafuse/fast.py)
        return cache.forward(input_ids, logits_to_keep)
    out = state.lm.model(input_ids=input_ids.to(state.lm.device), use_cache=True,
                         logits_to_keep=logits_to_keep, **{state.lm.cache_kwarg: cache})
    logits = out.logits.float()
    if state.lm.vocab.n_tokens < logits.shape[-1]:
        # Embedding matrices are often padded past the tokenizer (Qwen, random-weight benchmarks):
        # those ids cannot be decoded, so they must never be proposed.
        logits[..., state.lm.vocab.n_tokens:] = float("-inf")
    return logits


@torch.inference_mode()
def start(lm: LM, name: str, prompt: str, prompt_format: str) -> ModelState:
    """Encode the prompt once and prefill the cache; only the last position's logits are computed
    (over Gemma's 262k vocabulary, logits for every prompt position would cost more than the model)."""
    used = prompt_format
    if prompt_format == "chat" and getattr(lm.tokenizer, "chat_template", None):
        prefix = lm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)
        add_special = False
    else:
        used = "raw"  # a model without a chat template reads the plain prompt
        prefix, add_special = prompt, True
    ids = lm.tokenizer(prefix, add_special_tokens=add_special).input_ids
    if len(ids) == 0:
        raise InputError(f"the prompt encodes to no tokens for model {name!r}")
    if len(ids) >= lm.context_length:
        raise InputError(f"the prompt is {len(ids)} tokens for model {name!r}, whose context window "
                         f"is {lm.context_length} tokens: shorten it")
    state = ModelState(lm, name, prefix, add_special, used, list(ids), len(ids), kv.new_cache(), None)
    state.cache = fast.claim(lm, state, len(ids)) or state.cache
    logits = forward(state, torch.tensor([ids]), state.cache, logits_to_keep=1)
    state.next_logprobs = torch.log_softmax(logits[0, -1], dim=-1)
    return state
