"""`--batch-items N` memory: the estimate made before a run, on the embedded pair's real caches."""
import json
import sys
from pathlib import Path

import pytest

from adafuse import kv, state
from adafuse.eval import cli, memory, runner, tasks

sys.path.insert(0, str(Path(__file__).parent))
from test_eval_runner import fake_generate  # noqa: E402

PROMPT = "Question: What is the capital of Italy?\nAnswer: Rome\n\n" * 20   # a few-shot prompt of ~300 tokens


def test_bytes_per_token_is_what_a_prefilled_cache_holds(lms):
    # SmolLM2-135M: 30 layers x 3 KV heads x head dim 64; Gemma-3-270M: 18 layers x 1 x 256; keys and
    # values, float32.
    assert [kv.bytes_per_token(lm) for lm in lms] == [2 * 30 * 3 * 64 * 4, 2 * 18 * 1 * 256 * 4]
    for lm in lms:
        s = state.start(lm, lm.name, PROMPT, "raw")
        held = sum(layer.keys.nbytes + layer.values.nbytes for layer in s.cache.layers)
        assert held == len(s.ids) * kv.bytes_per_token(lm)


@pytest.fixture
def qa_task(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "x"}) + "\n" for q in ("q1", "q22")))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    return tasks.load_custom(data, "em", prompt_file=prompt, max_new_tokens=32), data, prompt


def test_per_item_bytes_counts_state_prompt_cache_and_one_row_per_candidate(lms, qa_task):
    task = qa_task[0]
    names = [lm.name for lm in lms]
    longest = [max(len(lm.tokenizer(task.prompt(i)).input_ids) for i in task.items) for lm in lms]
    assert min(longest) > 250
    for branches in (1, 3):
        methods = runner.parse_methods(["adafuse", "greedy"], names, branches=branches)
        # 2 caches (decoding state, the thread's prompt cache) + 2 models x B scoring rows
        want = sum(kv.bytes_per_token(lm) * (n + 32 + kv.HEADROOM) * (2 + 2 * branches) for lm, n in zip(lms, longest))
        assert memory.per_item_bytes(lms, [task], methods) == want
    assert memory.longest_prompt(lms[0], [task]) == longest[0]


def test_warning_names_a_batch_that_fits(lms, qa_task, monkeypatch):
    task = qa_task[0]
    methods = runner.parse_methods(["adafuse"], [lm.name for lm in lms], branches=3)
    per_item = memory.per_item_bytes(lms, [task], methods)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * per_item)
    assert memory.batch_warning(lms, [task], methods, 8) is None                      # 8 <= 0.8 x 10
    warning = memory.batch_warning(lms, [task], methods, 9)
    assert warning.startswith("--batch-items 9 may not fit in memory")
    assert "--batch-items 8 stays within 80 %" in warning
    # two processes share it
    assert memory.batch_warning(lms, [task], methods, 4, processes=2) is None
    assert "--batch-items 4 stays within 80 %" in memory.batch_warning(lms, [task], methods, 5, processes=2)
    assert "x 2 processes" in memory.batch_warning(lms, [task], methods, 5, processes=2)
    assert memory.batch_warning(lms, [task], methods, 1) is None                      # no batching, nothing to say
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)          # unknown: say nothing
    assert memory.batch_warning(lms, [task], methods, 64) is None


def test_available_bytes_reads_this_machine():
    free = memory.available_bytes("cpu")
    assert free is not None and 0 < free < 2 ** 50


def test_the_cli_warns_before_decoding_and_still_runs(lms, qa_task, monkeypatch, tmp_path, capsys):
    _, data, prompt = qa_task
    monkeypatch.setattr(cli, "_engine", lambda names, args, device: (fake_generate, lms))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    out = tmp_path / "out"
    assert cli.main(["--task", "custom", "--data", str(data), "--prompt-file", str(prompt), "--metric", "em",
                     "--models", ",".join(lm.name for lm in lms), "--methods", "greedy", "--batch-items", "2",
                     "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: --batch-items 2 may not fit in memory" in err
    assert "even --batch-items 1 may not fit" in err
    assert len((out / "custom" / f"greedy_{lms[0].name}.jsonl").read_text().splitlines()) == 2
