"""Answer metrics: SQuAD-normalised exact match and token F1, final-number accuracy (GSM8K),
and corpus BLEU / chrF from sacrebleu (spBLEU when a SentencePiece model is on disk).

Per-item functions return floats in [0, 1] (or [0, 100] for the sacrebleu sentence scores);
corpus-level translation scores are computed once over all items in `translation_scores`.
"""
from __future__ import annotations

import collections
import os
import re
import string
from dataclasses import dataclass

# ---------------------------------------------------------------- QA: SQuAD v1.1 official rules

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The SQuAD evaluation script's normalisation: lower case, drop punctuation and the
    articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: list[str]) -> float:
    """SQuAD token F1, the best over references."""
    return max((_f1(prediction, r) for r in references), default=0.0)


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        # The official script scores two empty answers as a match.
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- GSM8K: final number

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer is[:\s]*\**\s*(" + _NUMBER + r")", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(" + _NUMBER + r")")
_ANY_NUMBER = re.compile(_NUMBER)


def final_number(text: str) -> str | None:
    """The answer number of a step-by-step solution, as a canonical string ("1200", "-3.5").

    Looked for, in order: the last \\boxed{N}, the last "the answer is N", the last "#### N"
    (GSM8K reference style), then the last number anywhere. None when there is no number.
    """
    for found in (_last_number_in(_BOXED.findall(text)),
                  _last(_ANSWER_IS.findall(text)),
                  _last(_HASHES.findall(text)),
                  _last(_ANY_NUMBER.findall(text))):
        if found is not None:
            value = canonical_number(found)
            if value is not None:
                return value
    return None


def canonical_number(raw: str) -> str | None:
    """"$1,200.00" -> "1200"; "-3.50" -> "-3.5"; not a number -> None."""
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value == int(value):
        return str(int(value))
    return repr(value)


def number_accuracy(prediction: str, reference: str) -> float:
    """1.0 if the final numbers of prediction and reference are equal."""
    ref = final_number(reference)
    if ref is None:
        raise ValueError(f"reference has no number: {reference[:80]!r}")
    return float(final_number(prediction) == ref)


def _last(found: list[str]) -> str | None:
    return found[-1] if found else None


def _last_number_in(boxed: list[str]) -> str | None:
    for content in reversed(boxed):
        numbers = _ANY_NUMBER.findall(content)
        if numbers:
            return numbers[-1]
    return None


# ---------------------------------------------------------------- translation: sacrebleu

# Where sacrebleu keeps its SentencePiece models once downloaded (we never download).
SPM_FILES = {"flores200": "flores200sacrebleuspm", "flores101": "sacrebleu_tokenizer_spm.model"}


@dataclass(frozen=True)
class TranslationScores:
    bleu: float
    chrf: float
    bleu_kind: str        # "spBLEU (flores200)" | "spBLEU (flores101)" | "BLEU (13a)"
    bleu_signature: str
    chrf_signature: str


def find_spm_model(explicit: str | None = None) -> tuple[str, str] | None:
    """(name, path) of a local FLORES SentencePiece model, or None. Looks at `explicit`, then in
    sacrebleu's cache ($SACREBLEU or ~/.sacrebleu)/models for flores200, then flores101."""
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"SentencePiece model not found: {explicit}")
        known = [name for name, filename in SPM_FILES.items() if os.path.basename(explicit) == filename]
        return (known[0] if known else os.path.basename(explicit)), explicit
    root = os.environ.get("SACREBLEU", os.path.join(os.path.expanduser("~"), ".sacrebleu"))
    for name, filename in SPM_FILES.items():
        path = os.path.join(root, "models", filename)
        if os.path.isfile(path):
            return name, path
    return None


def translation_scores(hypotheses: list[str], references: list[str],
                       spm_model: str | None = None) -> TranslationScores:
    """Corpus BLEU and chrF. spBLEU (BLEU on SentencePiece pieces, as in FLORES) when a SPM model
    is found locally, else BLEU with sacrebleu's default 13a tokenizer; `bleu_kind` says which."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    chrf = CHRF()
    chrf_score = chrf.corpus_score(hypotheses, [references])
    spm = find_spm_model(spm_model)
    if spm is None:
        bleu = BLEU()
        bleu_score = bleu.corpus_score(hypotheses, [references])
        kind, signature = "BLEU (13a)", str(bleu.get_signature())
    else:
        # Same as sacrebleu's tokenize="flores200": split into pieces joined by spaces, then
        # BLEU without further tokenisation. Done by hand so that nothing is ever downloaded.
        import sentencepiece

        name, path = spm
        sp = sentencepiece.SentencePieceProcessor(model_file=path)
        pieces = lambda lines: [" ".join(sp.encode(line, out_type=str)) for line in lines]  # noqa: E731
        bleu = BLEU(tokenize="none")
        bleu_score = bleu.corpus_score(pieces(hypotheses), [pieces(references)])
        kind = f"spBLEU ({name})"
        signature = str(bleu.get_signature()).replace("tok:none", f"tok:spm-{name}")
    return TranslationScores(bleu_score.score, chrf_score.score, kind, signature,
                             str(chrf.get_signature()))


def sentence_chrf(hypothesis: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(hypothesis, [reference]).score


def sentence_bleu(hypothesis: str, reference: str) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True).sentence_score(hypothesis, [reference]).score
