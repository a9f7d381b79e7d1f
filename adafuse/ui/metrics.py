"""Task metrics against a reference answer: exact match and token F1 (QA), final-number
accuracy (math), corpus BLEU via sacrebleu (translation).

Plain functions of strings, shared by the app's comparison and any evaluation code.
SQuAD-style answer normalisation: lower-case, drop punctuation, articles and extra spaces.
"""
from __future__ import annotations

import re
import string
from collections import Counter

TASKS = ("qa", "math", "translation", "chat")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Numbers like -1,234.5 or .5 ; commas inside numbers are thousands separators.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _references(reference) -> list[str]:
    """A reference is one string, or several accepted answers separated by ' | ' or given as a list."""
    if isinstance(reference, (list, tuple)):
        refs = [str(r) for r in reference]
    else:
        refs = str(reference).split(" | ")
    return [r.strip() for r in refs if r and r.strip()]


def first_line(text: str) -> str:
    """The answer part of a few-shot completion: its first non-empty line."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(prediction: str, reference) -> float:
    pred = normalize_answer(first_line(prediction))
    return float(any(pred == normalize_answer(r) for r in _references(reference)))


def token_f1(prediction: str, reference) -> float:
    pred_tokens = normalize_answer(first_line(prediction)).split()
    best = 0.0
    for ref in _references(reference):
        ref_tokens = normalize_answer(ref).split()
        if not pred_tokens or not ref_tokens:
            best = max(best, float(pred_tokens == ref_tokens))
            continue
        common = Counter(pred_tokens) & Counter(ref_tokens)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred_tokens), same / len(ref_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def final_number(text: str) -> float | None:
    """The answer of a step-by-step solution: the number after 'answer is' or '####' if
    present, else the last number in the text."""
    for marker in ("answer is", "####"):
        at = text.lower().rfind(marker)
        if at >= 0:
            found = _NUMBER.findall(text[at + len(marker):])
            if found:
                return _to_float(found[0])
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def _to_float(token: str) -> float | None:
    try:
        return float(token.replace(",", "").rstrip("."))
    except ValueError:
        return None


def final_number_accuracy(prediction: str, reference) -> float:
    pred = final_number(prediction)
    ref = final_number(str(reference))
    if pred is None or ref is None:
        return 0.0
    return float(abs(pred - ref) < 1e-6)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults, 13a tokenisation), 0-100."""
    import sacrebleu
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def sentence_bleu(prediction: str, reference: str) -> float:
    import sacrebleu
    return float(sacrebleu.sentence_bleu(first_line(prediction), [reference.strip()]).score)


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
