"""The app's view of the task metrics: which metrics fit a task kind, applied to one output.

The metrics themselves live in adafuse/eval/metrics.py (shared with the evaluation harness); this
adds what the app needs around them: references typed as "a | b", and the answer taken as the
first non-empty line of a few-shot completion.
"""
from __future__ import annotations

from ..eval import metrics as _m

TASKS = ("qa", "math", "translation", "chat")
normalize_answer = _m.normalize_answer


def _references(reference) -> list[str]:
    """A reference is one string, or several accepted answers separated by ' | ' or given as a list."""
    refs = [str(r) for r in reference] if isinstance(reference, (list, tuple)) else str(reference).split(" | ")
    return [r.strip() for r in refs if r and r.strip()]


def first_line(text: str) -> str:
    """The answer part of a few-shot completion: its first non-empty line."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(prediction: str, reference) -> float:
    return _m.exact_match(first_line(prediction), _references(reference))


def token_f1(prediction: str, reference) -> float:
    return _m.token_f1(first_line(prediction), _references(reference))


def final_number(text: str) -> float | None:
    found = _m.final_number(text)
    return None if found is None else float(found)


def final_number_accuracy(prediction: str, reference) -> float:
    ref = _m.final_number(str(reference))
    return float(ref is not None and _m.final_number(prediction) == ref)


def sentence_bleu(prediction: str, reference: str) -> float:
    return _m.sentence_bleu(first_line(prediction), reference.strip())


def score(task: str, prediction: str, reference) -> dict[str, float]:
    """The metrics that fit `task` for one output; {} when there is no reference or no metric."""
    if reference is None or not str(reference).strip() or task not in TASKS:
        return {}
    if task == "qa":
        return {"exact match": exact_match(prediction, reference), "token F1": token_f1(prediction, reference)}
    if task == "math":
        return {"final-number accuracy": final_number_accuracy(prediction, reference)}
    if task == "translation":
        return {"BLEU": sentence_bleu(prediction, str(reference))}
    return {}
