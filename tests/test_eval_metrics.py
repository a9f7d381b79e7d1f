"""Eval metrics against hand-checked values."""
import math

import pytest

from adafuse.eval import metrics


@pytest.mark.parametrize("text, expected", [
    ("The  Quick, Brown fox!", "quick brown fox"),
    ("an Apple a day", "apple day"),
    ("Theatre", "theatre"),            # "the" only as a whole word
    ("U.S.A.", "usa"),
    ("  ", ""),
])
def test_normalize_answer_follows_squad(text, expected):
    assert metrics.normalize_answer(text) == expected


def test_exact_match():
    assert metrics.exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert metrics.exact_match("Paris France", ["Paris"]) == 0.0
    assert metrics.exact_match("Sunset Blvd", ["Sunset Boulevard", "Sunset Blvd."]) == 1.0
    assert metrics.exact_match("", ["x"]) == 0.0


def test_token_f1_by_hand():
    # pred {paris, france}, ref {paris}: P = 1/2, R = 1 -> F1 = 2/3
    assert metrics.token_f1("Paris France", ["Paris"]) == pytest.approx(2 / 3)
    # "cat sat on mat" vs "cat on mat": 3 common, P = 3/4, R = 1 -> 6/7
    assert metrics.token_f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(6 / 7)
    # best over references
    assert metrics.token_f1("cat", ["dog", "a cat"]) == 1.0
    # a repeated token counts only as often as it is shared: P = 1/2, R = 1
    assert metrics.token_f1("b b", ["b"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert metrics.token_f1("", ["x"]) == 0.0
    assert metrics.token_f1("the", ["a"]) == 1.0     # both normalise to empty: the official script says match


@pytest.mark.parametrize("text, number", [
    ("Step 1: 5-3=2.\nThe answer is \\boxed{1,200}", "1200"),
    ("so the answer is $18.00.", "18"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("The answer is 5. Then 7 more apples arrive.", "5"),     # the stated answer beats the last number
    ("\\boxed{7} but the answer is 9", "7"),                   # \boxed beats "the answer is"
    ("It dropped to -3.50 degrees", "-3.5"),
    ("Therefore, the answer is 12", "12"),
    ("no numbers here", None),
])
def test_final_number(text, number):
    assert metrics.final_number(text) == number


def test_number_accuracy():
    ref = "There are 144/12 = 12 sets.\nTherefore, the answer is 12"
    assert metrics.number_accuracy("12 + 0 = 12 so The answer is \\boxed{12}", ref) == 1.0
    assert metrics.number_accuracy("The answer is 12.0", ref) == 1.0
    assert metrics.number_accuracy("The answer is 13", ref) == 0.0
    assert metrics.number_accuracy("I do not know", ref) == 0.0
    with pytest.raises(ValueError):
        metrics.number_accuracy("1", "no number")


def test_bleu_and_chrf_by_hand(monkeypatch, tmp_path):
    monkeypatch.setenv("SACREBLEU", str(tmp_path))          # an empty cache: no SPM model there
    s = metrics.translation_scores(["a b c d"], ["a b c d e f g h"])
    # every n-gram precision is 1; brevity penalty exp(1 - 8/4)
    assert s.bleu == pytest.approx(100 * math.exp(-1))
    # chrF (beta 2, char orders 1-6, effective order): P = 1 for orders 1-4, R = 4/8, 3/7, 2/6, 1/5
    recall = (4 / 8 + 3 / 7 + 2 / 6 + 1 / 5) / 4
    assert s.chrf == pytest.approx(100 * 5 * recall / (4 + recall))
    assert s.bleu_kind == "BLEU (13a)" and "tok:13a" in s.bleu_signature
    same = metrics.translation_scores(["The cat sat on the mat."], ["The cat sat on the mat."])
    assert same.bleu == pytest.approx(100) and same.chrf == pytest.approx(100)
    with pytest.raises(ValueError):
        metrics.translation_scores(["a"], [])


def test_spbleu_used_and_labelled_when_a_local_spm_model_exists(monkeypatch, tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    lines = [f"the quick brown fox {i} jumps over the lazy dog number {i * 7}" for i in range(200)]
    corpus.write_text("\n".join(lines))
    (tmp_path / "models").mkdir()
    prefix = tmp_path / "models" / "tiny"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=60,
                                   model_type="unigram", minloglevel=2)
    (tmp_path / "models" / "tiny.model").rename(tmp_path / "models" / metrics.SPM_FILES["flores200"])
    monkeypatch.setenv("SACREBLEU", str(tmp_path))
    hyp, ref = ["the quick fox jumps"], ["the quick brown fox jumps"]
    s = metrics.translation_scores(hyp, ref)
    assert s.bleu_kind == "spBLEU (flores200)" and "tok:spm-flores200" in s.bleu_signature
    # Same number as BLEU over the pieces, and not the 13a word-level BLEU.
    from sacrebleu.metrics import BLEU
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "models" / metrics.SPM_FILES["flores200"]))
    pieces = lambda xs: [" ".join(sp.encode(x, out_type=str)) for x in xs]  # noqa: E731
    assert s.bleu == pytest.approx(BLEU(tokenize="none").corpus_score(pieces(hyp), [pieces(ref)]).score)
    assert s.bleu != pytest.approx(BLEU().corpus_score(hyp, [ref]).score)


def test_explicit_spm_model_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        metrics.translation_scores(["a"], ["a"], spm_model=str(tmp_path / "missing.model"))


def test_sentence_scores():
    assert metrics.sentence_chrf("Hallo Welt", "Hallo Welt") == pytest.approx(100)
    assert metrics.sentence_bleu("Hallo Welt", "Hallo Welt") == pytest.approx(100)
    assert metrics.sentence_bleu("xyz", "Hallo Welt") == pytest.approx(0)
