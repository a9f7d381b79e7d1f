"""Metrics against references: EM, token F1, final-number accuracy, BLEU."""
import pytest

from adafuse.ui import metrics


def test_exact_match_normalises_and_takes_first_line():
    assert metrics.exact_match(" The Eiffel Tower.\nQuestion: next", "eiffel tower") == 1.0
    assert metrics.exact_match("Leonardo", "Leonardo da Vinci | da Vinci | Leonardo") == 1.0
    assert metrics.exact_match("Michelangelo", ["Leonardo da Vinci", "da Vinci"]) == 0.0


def test_token_f1():
    assert metrics.token_f1("Leonardo da Vinci", "Leonardo da Vinci") == 1.0
    assert metrics.token_f1("da Vinci painted it", "Leonardo da Vinci") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics.token_f1("Paris", "London") == 0.0
    assert metrics.token_f1("", "London") == 0.0


def test_final_number():
    assert metrics.final_number("9 x 4 = 36 seats. 36 - 29 = 7.\nTherefore, the answer is 7") == 7.0
    assert metrics.final_number("So the total is $1,250.50 in the end") == 1250.5
    assert metrics.final_number("#### -3") == -3.0
    assert metrics.final_number("no digits") is None
    assert metrics.final_number_accuracy("36 - 29 = 7 seats. The answer is 7.", "7") == 1.0
    assert metrics.final_number_accuracy("The answer is 36", "7") == 0.0
    assert metrics.final_number_accuracy("nothing", "7") == 0.0


def test_bleu():
    ref = "My sister has been working as a doctor in a hospital in Berlin for three years."
    assert metrics.sentence_bleu(" " + ref + "\nGerman:", ref) == pytest.approx(100.0)
    partial = metrics.sentence_bleu("My sister works as a doctor in Berlin.", ref)
    assert 0.0 < partial < 60.0
    from adafuse.eval.metrics import translation_scores  # corpus BLEU is the harness's
    assert translation_scores([ref, "a cat"], [ref, "a dog sat"]).bleu < 100.0


def test_score_dispatch():
    assert metrics.score("qa", "Paris", "Paris") == {"exact match": 1.0, "token F1": 1.0}
    assert metrics.score("math", "answer is 7", "7") == {"final-number accuracy": 1.0}
    assert set(metrics.score("translation", "Hello", "Hello there")) == {"BLEU"}
    assert metrics.score("chat", "hi", "hello") == {}
    assert metrics.score("qa", "Paris", "  ") == {}
