"""Encoding prompt + output + a candidate from a safe boundary near the end, not from the start.

Scoring a candidate needs the model's own tokenization of the whole text (score.encode_candidate).
A full encode of a 500-token prompt costs about a millisecond on a GPU machine's host, once per
candidate per model per round, while the GPU waits for the scoring forward. Only the end of the
text changes from one round to the next, so a request keeps the ids of its text up to a safe
boundary (Head) and encodes only what follows.

A safe boundary is a position p where text[p] is a space and text[p - 1] is neither whitespace nor
"▁", and where no token can span p. Then, whatever follows p,

    encode(text) == encode(text[:p]) + encode(text[p:], without special tokens).

Two families of BPE tokenizers have them:
  - byte-level BPE behind a splitting regex (GPT-2, Llama-3, Qwen2, SmolLM2): every such regex
    starts a piece at a space that follows a non-space, and BPE never merges across pieces;
  - SentencePiece-style BPE over the whole text, spaces read as "▁" (Mistral, Llama-2, Gemma):
    a merge across p would make a token holding text[p - 1] followed by "▁". Where the vocabulary
    has such a token (Gemma has ">▁</"), a space after that character is not a boundary.
Every other tokenizer encodes the whole text each time. Both the rule and what it assumes are
checked on probe texts when a tokenizer is loaded (safe_split), and each request checks its own
prompt (start_head): a tokenizer or prompt that fails encodes in full, which is always exact.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """A tokenizer's safe boundaries: a space after any character but whitespace, "▁" and
    `not_after` (characters that some token joins to a following "▁")."""
    not_after: frozenset[str]


@dataclass(frozen=True)
class Head:
    """`text`, the start of one request's prompt + output, encodes to `ids` (special tokens
    included) and ends at a safe boundary, so these ids begin the encoding of any text it begins."""
    text: str
    ids: list[int]

    @property
    def end(self) -> int:
        return len(self.text)


def is_boundary(split: Split, text: str, p: int) -> bool:
    if p <= 0 or p >= len(text) or text[p] != " ":
        return False
    before = text[p - 1]
    return not before.isspace() and before != "▁" and before not in split.not_after


def last_boundary(split: Split, text: str, end: int, after: int = 0) -> int:
    """The last safe boundary p with after < p < end, or -1."""
    p = text.rfind(" ", after + 1, end)
    while p > after:
        if is_boundary(split, text, p):
            return p
        p = text.rfind(" ", after + 1, p)
    return -1


def _piece(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def start_head(tokenizer, split: Split | None, prefix: str, prompt_ids: list[int],
               add_special: bool) -> Head | None:
    """The head of a request whose prompt text `prefix` encoded to `prompt_ids`; None where the
    tokenizer has no safe boundaries, the prompt none either, or the prompt does not split there
    (a normalizer or post-processor that acts on the whole text): such a request encodes in full."""
    if split is None:
        return None
    p = last_boundary(split, prefix, len(prefix))
    if p < 0:
        return None
    ids = tokenizer(prefix[:p], add_special_tokens=add_special).input_ids
    if ids + _piece(tokenizer, prefix[p:]) != list(prompt_ids):
        return None
    return Head(prefix[:p], ids)


def encode(tokenizer, split: Split, head: Head, text: str, fixed: int) -> tuple[list[int], Head]:
    """(the ids of `text`, which begins with `head.text`; the head for later calls). `fixed`: how
    many leading characters of `text` stay the same in later calls (prompt + committed output);
    the head moves up to the last safe boundary inside them, encoding only the stretch it moves
    over."""
    p = last_boundary(split, text, fixed, after=head.end - 1)
    if p > head.end:
        head = Head(text[:p], head.ids + _piece(tokenizer, text[head.end:p]))
    return head.ids + _piece(tokenizer, text[head.end:]), head


# --- which tokenizers have safe boundaries (at load) --------------------------------------------

PROBES = [
    "The history of the city begins with a small settlement on the river, where traders met.",
    "Question: who wrote  the novel pride and prejudice?\nAnswer: Jane Austen (1813).",
    "def f(x):\n    return x ** 2  # square it\n\nprint(f(3), [1, 2, 3])",
    "Die Katze saß auf der Matte; l'été est arrivé — naïve café, 東京 は 大きい 都市 です。",
    "Total: $1,234.56 on 2024-01-31, 3.14159 * 42 = 131.95 ... \"quoted\" 'single' <b> </b> >< a p> </p>",
    "x = a+b   y\t= c  \n  z  ▁ w ▁▁ v. http://example.com/a?b=c&d=e #tag @user :) ;-)",
    "Step 1: 48 / 2 = 24 clips.\nStep 2: 48 + 24 = 72.\nThe answer is \\boxed{72}.",
    "<start_of_turn>user hello<end_of_turn> <|im_start|>assistant ok<|im_end|> [INST] hi [/INST]",
]


def safe_split(tokenizer) -> Split | None:
    """The tokenizer's safe boundaries (module docstring), or None where it has none that this
    module can vouch for. Checked on PROBES at every boundary they hold."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "BPE":
        return None
    try:   # the pre-tokenizer's settings (the whole tokenizer's JSON takes a second for Gemma's)
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else None
    except Exception:  # noqa: BLE001 - a tokenizer that cannot describe itself encodes in full
        return None
    steps = _steps(pre)
    kinds = {step.get("type") for step in steps}
    if "ByteLevel" in kinds:
        # byte-level BPE must split by a regex: ByteLevel's own (use_regex) or a Split before it
        if not (any(step.get("use_regex") for step in steps if step.get("type") == "ByteLevel") or "Split" in kinds):
            return None
        split = Split(frozenset())
    elif kinds <= {"Metaspace", "Split"}:
        tokens = backend.get_vocab()
        split = Split(frozenset(m.group(1) for t in tokens if "▁" in t for m in re.finditer(r"([^▁])(?=▁)", t)))
    else:
        return None
    for text in PROBES:
        full = _piece(tokenizer, text)
        for p in range(1, len(text)):
            if is_boundary(split, text, p) and _piece(tokenizer, text[:p]) + _piece(tokenizer, text[p:]) != full:
                return None
    return split


def _steps(pre) -> list[dict]:
    """A pre-tokenizer's settings as a flat list of its steps (a Sequence unrolled)."""
    if not pre:
        return []
    if pre.get("type") == "Sequence":
        return [step for p in pre.get("pretokenizers", []) for step in _steps(p)]
    return [pre]
