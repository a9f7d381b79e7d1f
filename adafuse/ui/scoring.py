"""The ensemble's own objective for a finished output: mean over models of each model's mean
per-token NLL of the output text (in its own tokenization) given the prompt. Puts AdaFuse and
the baselines on one scale. Scoring reuses the engine's prefill and candidate scorer, so an
output is tokenized and scored exactly as a candidate span would be."""
from __future__ import annotations

import math

import torch

from ..config import Execution
from ..errors import InputError
from ..score import score
from ..state import start


class OutputScorer:
    """Scores outputs of one prompt; each model's prompt is prefilled once and shared by every
    output scored (the engine's scorer leaves the prefilled cache untouched).

    Its states stay on the eager path: they live as long as the scorer, which in Compare spans the
    baselines' decodes, and a live state holding a model's fast engine would send every one of
    those decodes down the eager path (tests/test_fast.py)."""

    def __init__(self, lms: list, prompt: str, prompt_format: str = "raw"):
        self.lms, self.prompt, self.prompt_format = list(lms), prompt, prompt_format
        self._states = {}

    @torch.inference_mode()
    def nll(self, lm, text: str) -> float:
        """Mean per-token NLL of `text` after the prompt for one model; NaN for an empty output
        or one that does not fit the model's context window."""
        if not text:
            return float("nan")
        try:
            state = self._states.get(lm.name)
            if state is None:
                state = self._states[lm.name] = start(lm, lm.name, self.prompt, self.prompt_format,
                                                      execution=Execution(fast="off"))
            if len(state.encode(text)) >= lm.context_length:
                return float("nan")
            return float(score(state, "", [(text, False)])[0].nll)
        except InputError:
            return float("nan")

    def objective(self, text: str) -> tuple[float, dict[str, float]]:
        per_model = {lm.name: self.nll(lm, text) for lm in self.lms}
        vals = list(per_model.values())
        if not vals or any(math.isnan(v) for v in vals):
            return float("nan"), per_model
        return sum(vals) / len(vals), per_model


def ensemble_objective(lms: list, prompt: str, text: str, prompt_format: str = "raw") -> tuple[float, dict[str, float]]:
    return OutputScorer(lms, prompt, prompt_format).objective(text)
