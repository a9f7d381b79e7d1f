"""Task readers, prompt shapes, stop strings and answer read-out, on files the tests write."""
import json
from pathlib import Path

import pytest

from adafuse.eval import tasks


def write_bench(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = {
        "nq": [{"question": "who sang nothing compares 2 u", "answer": ["Prince", "Sinead O'Connor"]}],
        "triviaqa": [{"question": "Which king married Mary of Teck?", "answer": ["George V", "King George V"]}],
        "squad": [{"question": "Normandy is in France. Where is Normandy?", "answer": ["France"]}],
        "gsm8k": [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\nTherefore, the answer is 7"}],
        "flores_de_en": [{"id": 0, "question": "Hallo Welt.", "answer": "Hello world."}],
        "flores_en_de": [{"id": 0, "question": "Hello world.", "answer": "Hallo Welt."}],
    }
    prompts = {"nq": "Answer briefly.\n\nQuestion: q1\nAnswer: a1", "triviaqa": "Answer.\n\nQuestion: q\nAnswer: a.",
               "squad": "Extract.\n\nQuestion:\nctx q\nAnswer:\nx", "gsm8k": "Question: 1+1?\nLet's think step by step\n"
               "1+1=2\nThe answer is \\boxed{2}",
               "flores_de_en": "Translate the following German sentences into English.\n\nNow, translate the following sentences:",
               "flores_en_de": "Translate the following English sentences into German.\n\nNow, translate the following sentences into German:"}
    for stem, items in rows.items():
        (root / f"{stem}_dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
        (root / f"{stem}_prompt.txt").write_text(prompts[stem], encoding="utf-8")
    return root


def cut_at_stop(text: str, stop) -> str:
    """What the engine does with stop strings: the text ends before the first one found."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(hits)] if hits else text


def test_prompt_shapes_follow_the_paper(tmp_path):
    root = write_bench(tmp_path / "bench")
    nq = tasks.load_task("nq", root)
    assert nq.prompt(nq.items[0]) == ("Answer briefly.\n\nQuestion: q1\nAnswer: a1"
                                      "\n\nQuestion: who sang nothing compares 2 u\nAnswer:")
    gsm = tasks.load_task("gsm8k", root)
    assert gsm.prompt(gsm.items[0]).endswith("\\boxed{2}\n\nQuestion: Tom has 3 apples and buys 4. How many?\n"
                                             "Let's think step by step\n")
    de_en = tasks.load_task("flores-de-en", root)
    assert de_en.prompt(de_en.items[0]) == ("Translate the following German sentences into English.\n\n"
                                            "Now, translate the following sentences:\n\nGerman: Hallo Welt.\nEnglish:")
    en_de = tasks.load_task("flores-en-de", root)
    assert en_de.prompt(en_de.items[0]).endswith("into German:\n\nEnglish: Hello world.\nGerman:")
    assert tasks.load_task("squad", root).spec.metric == "em"
    assert de_en.spec.metric == "bleu" and gsm.spec.metric == "number"


@pytest.mark.parametrize("task, generated, answer", [
    # NQ / TriviaQA answer on the "Answer:" line, the model then starts the next example
    ("nq", " Prince\n\nQuestion: who wrote hamlet\nAnswer: Shakespeare", "Prince"),
    ("triviaqa", " George V.\nQuestion: next", "George V."),
    # SQuAD's examples put the answer on the next line: one newline must not stop it
    ("squad", "\nFrance\n\nQuestion:\nThe Normans were", "France"),
    # GSM8K: steps one a line; the example separator stops it
    ("gsm8k", "3 + 4 = 7\nThe answer is \\boxed{7}\n\n\nQuestion: Bella has", "7"),
    ("flores-de-en", " Hello world.\nGerman: Hallo Mond.", "Hello world."),
    ("flores-en-de", " Hallo Welt.\n", "Hallo Welt."),
])
def test_stop_strings_and_answer_readout(tmp_path, task, generated, answer):
    t = tasks.load_task(task, write_bench(tmp_path / "bench"))
    kept = cut_at_stop(generated, t.spec.stop)
    assert t.answer(kept) == answer
    assert "Question" not in kept


def test_scores_per_item(tmp_path):
    root = write_bench(tmp_path / "bench")
    nq = tasks.load_task("nq", root)
    assert nq.score(" prince", nq.items[0]) == {"em": 1.0, "f1": 1.0}
    assert nq.score(" Prince Rogers", nq.items[0]) == {"em": 0.0, "f1": pytest.approx(2 / 3)}
    gsm = tasks.load_task("gsm8k", root)
    assert gsm.score("The answer is \\boxed{7}", gsm.items[0]) == {"accuracy": 1.0}
    assert gsm.score("The answer is 8", gsm.items[0]) == {"accuracy": 0.0}
    fl = tasks.load_task("flores-de-en", root)
    assert fl.score("Hello world.", fl.items[0])["chrf"] == pytest.approx(100)


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "q1", "answer": "a"}\n'
                    '{"question": "q2", "answer": \n'          # cut-off JSON
                    '\n'                                         # blank: ignored silently
                    '["not", "an", "object"]\n'
                    '{"question": "", "answer": "a"}\n'
                    '{"question": "q6", "answer": []}\n'
                    '{"question": "q7", "answer": ["b", "c"]}\n', encoding="utf-8")
    t = tasks.load_custom(path, "f1")
    assert [i.line for i in t.items] == [1, 7]
    assert t.items[1].references == ("b", "c")
    assert [p.split(":")[1] for p in t.problems] == ["2", "4", "5", "6"]
    assert t.problems[0].startswith("mine.jsonl:2: not valid JSON")
    assert "non-empty list" in t.problems[3]


def test_number_task_rejects_references_without_a_number(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text('{"question": "q", "answer": "the answer is 4"}\n{"question": "r", "answer": "four"}\n')
    t = tasks.load_custom(path, "number")
    assert len(t.items) == 1 and t.problems == ['math.jsonl:2: "answer" has no final number; skipped']


def test_custom_task_without_prompt_file_starts_at_the_question(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "capital of France?", "answer": "Paris"}\n')
    t = tasks.load_custom(path, "em")
    assert t.prompt(t.items[0]) == "Question: capital of France?\nAnswer:"
    t = tasks.load_custom(path, "em", template="Q: {question}\nA:", stop=("\n",), max_new_tokens=5)
    assert t.prompt(t.items[0]) == "Q: capital of France?\nA:"
    assert t.spec.stop == ("\n",) and t.spec.max_new_tokens == 5
    with pytest.raises(tasks.EvalDataError, match="question"):
        tasks.load_custom(path, "em", template="no field")
    with pytest.raises(tasks.EvalDataError, match="metric"):
        tasks.load_custom(path, "rouge")


def test_item_keys_are_stable_and_change_with_the_question(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "a", "answer": "x"}\n')
    k1 = tasks.load_custom(path, "em").items[0].key
    assert tasks.load_custom(path, "em").items[0].key == k1
    path.write_text('{"question": "b", "answer": "x"}\n')
    assert tasks.load_custom(path, "em").items[0].key != k1


def test_missing_data_gives_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(tasks.EvalDataError, match="--data-dir"):
        tasks.load_task("nq", tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "nq_dev.jsonl").write_text('{"question": "a", "answer": "x"}\n')
    with pytest.raises(tasks.EvalDataError, match="nq_prompt.txt"):
        tasks.load_task("nq", tmp_path / "half")
    with pytest.raises(tasks.EvalDataError, match="unknown task"):
        tasks.load_task("mmlu", tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("garbage\n")
    with pytest.raises(tasks.EvalDataError, match="no usable items"):
        tasks.load_custom(empty, "em")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(tasks.ENV_DATA_DIR, raising=False)
    repo = Path(tasks.__file__).resolve().parents[2]
    assert tasks.default_data_dir() == repo.parent / "shared" / "bench"
    monkeypatch.setenv(tasks.ENV_DATA_DIR, str(tmp_path))
    assert tasks.default_data_dir() == tmp_path
