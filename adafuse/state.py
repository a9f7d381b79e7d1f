"""Per-model decoding state for one request, the prompt prefill, and the counted forward pass."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import batch, fast, kv, tail
from .config import Execution
from .errors import InputError
from .models import LM
from .steps import WordStart


@dataclass
class ModelState:
    lm: LM
    name: str                     # unique within the request (the same model may appear twice)
    prefix: str                   # the text the prompt ids stand for (raw prompt or chat template)
    add_special: bool             # encode(prefix + text) adds the tokenizer's special tokens (BOS)
    prompt_format: str            # "raw" or "chat" as actually used for this model
    ids: list[int]                # prompt + committed output, in this model's own tokens
    n_prompt: int
    # Between rounds this main cache holds the KV of exactly `ids + lookahead` (the main-cache
    # invariant, stated in adafuse/rounds.py: every step relies on it).
    cache: object
    next_logprobs: torch.Tensor | None   # [V] log p(next token | ids); from the last forward
    forward_passes: int = 0
    # What next_logprobs says at a word start, when the forward that made it has read it already
    # (adafuse/steps.py); None: propose reads it. Set together with next_logprobs, or reset to None.
    next_start: WordStart | None = None
    # Greedy tokens this model computed past the committed ids in an earlier round (its span ran
    # further than the winner, which was a prefix of it). Their KV sits in `cache` right after
    # `ids`, with the distribution after each: greedy decoding would produce exactly these tokens
    # again, so the next proposal takes them without a forward.
    lookahead: list[int] = field(default_factory=list)
    lookahead_dists: list = field(default_factory=list)
    # The encoding of prefix + output up to a safe boundary (adafuse/tail.py), so that encode()
    # encodes only the rest; None: encode the whole text every time.
    head: tail.Head | None = None

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.n_prompt

    def encode(self, committed: str, candidate: str = "") -> list[int]:
        """This model's tokenization of prompt + committed output + candidate. Where the tokenizer
        allows it, only the text after the last safe boundary before the candidate is encoded
        (adafuse/tail.py: the same ids as a full encode); `committed` must then be the output that
        later calls extend, which it is within a request."""
        text = self.prefix + committed + candidate
        if self.head is None or not text.startswith(self.head.text):   # no head, or not this request's text
            return self.lm.tokenizer(text, add_special_tokens=self.add_special).input_ids
        ids, self.head = tail.encode(self.lm.tokenizer, self.lm.split, self.head, text, len(self.prefix) + len(committed))
        return ids


def forward(state: ModelState, input_ids: torch.Tensor, cache, logits_to_keep: int = 0) -> torch.Tensor:
    """One counted forward over `input_ids` [rows, t], extending `cache`; float32 logits."""
    state.forward_passes += 1
    if isinstance(cache, fast.FastCache):  # static KV buffer + CUDA graphs (adafuse/fast.py)
        return cache.forward(input_ids, logits_to_keep)
    shared = batch.current()   # decoding alongside other requests (adafuse/batch.py): wait for the step
    if shared is not None:
        logits = shared.forward(state.lm, input_ids, cache, logits_to_keep).float()
    else:
        logits = batch.plain_forward(state.lm, input_ids, cache, logits_to_keep).float()
    if state.lm.vocab.n_tokens < logits.shape[-1]:
        # Embedding matrices are often padded past the tokenizer (Qwen, random-weight benchmarks):
        # those ids cannot be decoded, so they must never be proposed.
        logits[..., state.lm.vocab.n_tokens:] = float("-inf")
    return logits


class PromptCache:
    """The prefilled KV of the last prompt each model started, so that the next prompt sharing its
    leading tokens prefills only the rest. An evaluation starts every item with the same few-shot
    examples and runs several methods on the same item: with this, the examples are prefilled once
    per model and an item once per model, not once per method (for SQuAD and GSM8K, whose prompts
    are over 1,000 tokens, prefill was most of the time).

    The stored KV are views of the tensors prefill made; decoding only ever replaces a layer's
    tensors (concatenation, slicing), never writes into them, so an entry stays valid while the
    request that made it goes on. Chunked prefill can differ from one-piece prefill in the last
    float bits; that is the only difference (on CUDA, only with batch.safe_attention's kernels: one
    of PyTorch's got a chunk's attention wrong, see there).
    """

    def __init__(self):
        # id(lm) -> (lm, ids, cache). The entry holds the LM itself, so its id cannot be reused by
        # another model while the entry lives, and `take` checks it is the same object.
        self.entries: dict[int, tuple[LM, list[int], object]] = {}
        self.reused_tokens = 0       # prompt tokens taken from the cache, over all requests
        self.prefilled_tokens = 0    # prompt tokens run through a model

    def take(self, lm: LM, ids: list[int]):
        """(cache holding the longest usable shared prefix, its length). At least one token is
        left to prefill: its forward gives the next-token distribution."""
        entry = self.entries.get(id(lm))
        if entry is None or entry[0] is not lm:
            return kv.new_cache(), 0
        _, old, cache = entry
        n = min(len(old), len(ids) - 1)
        k = next((i for i in range(n) if old[i] != ids[i]), n)
        if k == 0:
            return kv.new_cache(), 0
        return kv.select_row(cache, 0, k), k

    def put(self, lm: LM, ids: list[int], cache) -> None:
        self.entries[id(lm)] = (lm, list(ids), kv.select_row(cache, 0, len(ids)))

    def copy(self) -> "PromptCache":
        """A cache starting from the same entries, for another thread or arm: the entries are views
        that decoding never writes into, so both may use them; what one puts the other does not see.
        The token counters start at zero."""
        other = PromptCache()
        other.entries = dict(self.entries)
        return other


@torch.inference_mode()
def start(lm: LM, name: str, prompt: str, prompt_format: str,
          prompt_cache: PromptCache | None = None, execution: Execution = Execution()) -> ModelState:
    """Encode the prompt once and prefill the cache; only the last position's logits are computed
    (over Gemma's 262k vocabulary, logits for every prompt position would cost more than the model).
    With a `prompt_cache`, the leading tokens it already holds are not prefilled again.
    `execution` says whether the state takes the model's fast engine (fast.claim) and how it runs;
    Execution(fast="off") keeps the eager cache: for a state that lives on past its request, which
    would otherwise hold the engine for as long."""
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
    state = ModelState(lm, name, prefix, add_special, used, list(ids), len(ids), kv.new_cache(), None,
                       head=tail.start_head(lm.tokenizer, lm.split, prefix, ids, add_special))
    # the fast path's static buffers are written in place: one live state owns them
    claimed = fast.claim(lm, state, len(ids), execution)
    reused = 0
    if claimed is not None:
        state.cache = claimed
    elif prompt_cache is not None:
        state.cache, reused = prompt_cache.take(lm, ids)
    logits = forward(state, torch.tensor([ids[reused:]]), state.cache, logits_to_keep=1)
    state.next_logprobs = torch.log_softmax(logits[0, -1], dim=-1)
    if prompt_cache is not None and claimed is None:
        prompt_cache.put(lm, ids, state.cache)
        prompt_cache.reused_tokens += reused
        prompt_cache.prefilled_tokens += len(ids) - reused
    return state
