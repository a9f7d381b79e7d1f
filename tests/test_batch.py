"""Item batching (adafuse/batch.py) and the append-only KV buffers (kv.GrowingLayer), on the real pair."""
import threading

import pytest
import torch

import adafuse
from adafuse import DecodeConfig, batch, kv
from adafuse.eval import runner, tasks

SHOTS = ("Question: what is the capital of France?\nAnswer: Paris\n\n"
         "Question: who wrote Hamlet?\nAnswer: William Shakespeare\n\n")
QUESTIONS = ["what is the largest planet?", "who painted the Mona Lisa?", "when did World War II end?",
             "what is the boiling point of water?", "who was the first president of the United States?"]
# Every engine path: one-word and long spans, branches (multi-row caches), fixed rounds, one model.
CONFIGS = [DecodeConfig(max_new_tokens=12, stop=("\n",)),
           DecodeConfig(max_new_tokens=12, stop=("\n",), branches=3),
           DecodeConfig(mode="fixed", fixed_words=2, max_new_tokens=12, stop=("\n",)),
           DecodeConfig(mode="greedy", max_new_tokens=12, stop=("\n",)),
           DecodeConfig(max_new_tokens=12, stop=("\n",), tau=0.3)]


def _requests(lms):
    prompts = [f"{SHOTS}Question: {q}\nAnswer:" for q in QUESTIONS]
    return [(lms[:1] if cfg.mode == "greedy" else lms, p, cfg) for p, cfg in zip(prompts, CONFIGS)]


def _scores(trace):
    return [c.score for r in trace.rounds for c in r.candidates]


def _batched(requests, width):
    out = [None] * len(requests)

    def job(i):
        return lambda: out.__setitem__(i, adafuse.generate(*requests[i]))
    b = batch.run_batched((job(i) for i in range(len(requests))), width)
    return out, b


def test_batched_decoding_equals_one_at_a_time(lms):
    requests = _requests(lms)
    alone = [adafuse.generate(*r) for r in requests]
    together, b = _batched(requests, width=len(requests))
    for a, t in zip(alone, together):
        assert a.text.strip() and t.text == a.text
        assert [r.chosen for r in t.rounds] == [r.chosen for r in a.rounds]
        assert [[c.text for c in r.candidates] for r in t.rounds] == [[c.text for c in r.candidates] for r in a.rounds]
        assert max(abs(x - y) for x, y in zip(_scores(a), _scores(t))) < 1e-4
        assert t.stats.forward_passes == a.stats.forward_passes
    # The forwards were really shared: far fewer model calls than the requests made.
    made = sum(sum(t.stats.forward_passes.values()) for t in together)
    assert b.requests == made and b.rows >= made
    assert b.forwards < made / 2


def test_batched_runs_are_reproducible(lms):
    requests = _requests(lms)[:3]
    first, b1 = _batched(requests, width=3)
    second, b2 = _batched(requests, width=3)
    assert [_scores(t) for t in first] == [_scores(t) for t in second]   # exactly: the steps do not depend on timing
    assert (b1.steps, b1.requests, b1.forwards, b1.rows) == (b2.steps, b2.requests, b2.forwards, b2.rows)


def test_more_jobs_than_threads_and_one_thread(lms):
    requests = _requests(lms)[:3] + _requests(lms)[:2]
    alone = [adafuse.generate(*r) for r in requests[:3]]
    for width in (2, 1):
        together, _ = _batched(requests, width)
        assert [t.text for t in together] == [a.text for a in alone] + [a.text for a in alone[:2]]


def test_an_error_in_one_job_is_raised_and_nothing_hangs(lms):
    done = []

    def good():
        done.append(adafuse.generate(lms, "Question: who wrote Hamlet?\nAnswer:", CONFIGS[0]).text)

    def bad():
        adafuse.generate(lms, "   ", CONFIGS[0])     # an empty prompt: InputError

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("error", _raises(lambda: batch.run_batched(iter([good, bad, good]), 2))))
    t.start()
    t.join(timeout=300)
    assert not t.is_alive(), "a failing job left the batch hanging"
    assert isinstance(result["error"], adafuse.InputError) and "empty" in str(result["error"])
    assert done and all(d.strip() for d in done)     # the job that ran alongside finished


def _raises(fn):
    try:
        fn()
    except Exception as e:
        return e
    return None


def test_batch_width_must_be_positive():
    with pytest.raises(ValueError):
        batch.run_batched(iter([]), 0)


def test_growing_layer_appends_in_place_and_never_rewrites_a_view(smol):
    torch.manual_seed(0)
    heads, dim = 3, 64
    cache = kv.new_cache()
    chunks = [torch.randn(1, heads, t, dim) for t in (5, 1, 1, 3)]
    for c in chunks:
        cache.update(c, -c, 0)
    layer = cache.layers[0]
    assert isinstance(layer, kv.GrowingLayer)
    assert torch.equal(layer.keys, torch.cat(chunks, dim=-2)) and torch.equal(layer.values, -torch.cat(chunks, dim=-2))
    base = layer.keys.data_ptr()
    cache.update(torch.randn(1, heads, 1, dim), torch.randn(1, heads, 1, dim), 0)
    assert layer.keys.data_ptr() == base                        # appended in its buffer, no copy
    # A view someone holds (a PromptCache entry), then a crop and a new token: the view keeps its values.
    view = kv.select_row(cache, 0, 10)
    held = view.layers[0].keys.clone()
    kv.crop(cache, 8)
    new = torch.randn(1, heads, 1, dim)
    cache.update(new, new, 0)
    assert torch.equal(view.layers[0].keys, held)
    assert layer.keys.shape[-2] == 9 and torch.equal(layer.keys[:, :, 8:], new)
    assert layer.keys.data_ptr() != base                        # the crop made it copy out


def test_eval_with_batched_items_writes_the_same_results(lms, tmp_path):
    task = tasks.load_custom(_write_items(tmp_path), "em", template=SHOTS + "Question: {question}\nAnswer:",
                             max_new_tokens=10)
    names = [lm.name for lm in lms]
    methods = runner.parse_methods(["adafuse", "greedy"], names)
    by_name = dict(zip(names, lms))

    def generate(models, prompt, cfg):
        return adafuse.generate([by_name[m] for m in models], prompt, cfg)

    results = {}
    for width in (1, 3):
        opts = runner.RunOptions(out_dir=tmp_path / f"w{width}", progress=False, batch_items=width)
        results[width] = runner.run([task], methods, generate, opts)[task.name]
    for slug, records in results[1].items():
        batched = results[3][slug]
        assert [r["key"] for r in batched] == [r["key"] for r in records] and len(records) == 4
        assert [r["prediction"] for r in batched] == [r["prediction"] for r in records]
        assert [r["metrics"] for r in batched] == [r["metrics"] for r in records]


def _write_items(tmp_path):
    path = tmp_path / "items.jsonl"
    rows = [("What is the capital of France?", "Paris"), ("Who wrote Hamlet?", "William Shakespeare"),
            ("What is the largest planet?", "Jupiter"), ("What colour is the sky?", "blue")]
    path.write_text("".join(f'{{"question": "{q}", "answer": "{a}"}}\n' for q, a in rows))
    return path
