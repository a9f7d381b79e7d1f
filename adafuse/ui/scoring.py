"""The ensemble's own objective for a finished output: mean over models of each model's mean
per-token NLL of the output text (in its own tokenization) given the prompt. Puts AdaFuse and
the baselines on one scale. Scoring reuses the engine's prefill and candidate scorer, so an
output is tokenized and scored exactly as a candidate span would be."""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..score import score
from ..state import start


@torch.inference_mode()
def output_nll(lm, prompt: str, text: str, prompt_format: str = "raw") -> float:
    """Mean per-token NLL of `text` after `prompt` for one model; NaN for an empty output or one
    that does not fit the model's context window."""
    if not text:
        return float("nan")
    try:
        state = start(lm, lm.name, prompt, prompt_format)
        if len(state.encode(text)) >= lm.context_length:
            return float("nan")
        return float(score(state, "", [(text, False)])[0].nll)
    except InputError:
        return float("nan")


def ensemble_objective(lms: list, prompt: str, text: str, prompt_format: str = "raw") -> tuple[float, dict[str, float]]:
    per_model = {lm.name: output_nll(lm, prompt, text, prompt_format) for lm in lms}
    vals = list(per_model.values())
    if not vals or any(math.isnan(v) for v in vals):
        return float("nan"), per_model
    return sum(vals) / len(vals), per_model
