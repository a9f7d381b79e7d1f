"""The ensemble's own objective for a finished output: mean over models of each model's mean
per-token NLL of the output text (in its own tokenization) given the prompt. Used to put
AdaFuse and the baselines on one scale."""
from __future__ import annotations

import math

import torch


def prompt_context(lm, prompt: str, prompt_format: str) -> str:
    """The text a model conditions on: the raw prompt, or its chat template with the
    generation prompt appended."""
    if prompt_format == "chat" and getattr(lm.tokenizer, "chat_template", None):
        return lm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                add_generation_prompt=True)
    return prompt


def _ids(tokenizer, text: str, add_special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


@torch.inference_mode()
def mean_nll(lm, context: str, continuation: str, add_special: bool = True) -> float:
    """Mean per-token NLL of `continuation` after `context`. The continuation's tokens are
    those of tokenize(context + continuation) past the longest prefix shared with
    tokenize(context), so a word split across the boundary is scored as the model reads it."""
    if not continuation:
        return float("nan")
    tok = lm.tokenizer
    ctx = _ids(tok, context, add_special)
    full = _ids(tok, context + continuation, add_special)
    k = 0
    while k < min(len(ctx), len(full)) and ctx[k] == full[k]:
        k += 1
    k = max(k, 1)                      # the first token has no context to be scored from
    if len(full) <= k:
        return float("nan")
    limit = getattr(lm, "context_length", None) or len(full)
    start = max(0, len(full) - int(limit))
    if start >= k:                     # far too long to score in one window
        return float("nan")
    ids = torch.tensor([full[start:]], device=lm.model.device)
    logits = lm.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits[k - start - 1:-1], dim=-1)
    target = ids[0, k - start:]
    nll = -logprobs.gather(-1, target[:, None]).squeeze(-1)
    return float(nll.mean())


def ensemble_objective(lms: list, prompt: str, text: str, prompt_format: str = "raw") -> tuple[float, dict[str, float]]:
    per_model = {}
    for lm in lms:
        chat = prompt_format == "chat" and getattr(lm.tokenizer, "chat_template", None)
        per_model[lm.name] = mean_nll(lm, prompt_context(lm, prompt, prompt_format), text, add_special=not chat)
    vals = [v for v in per_model.values() if not math.isnan(v)]
    return (sum(vals) / len(vals) if len(vals) == len(per_model) and vals else float("nan")), per_model
