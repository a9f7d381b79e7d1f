"""Models in threads (adafuse/parallel.py): a decode whose models propose and score in a thread each
gives exactly the decode that runs them in turn. On the GPU each thread also has a CUDA stream of
its own (checked there by scripts/check_gpu_fast_path.py); here, on CPU, Execution(parallel="on")
forces the threads, which exercises the round's concurrent steps and their merge."""
import threading

import pytest

import adafuse
from adafuse import DecodeConfig, Execution, parallel

PROMPT = "Question: what is the capital of Australia?\nAnswer:"


@pytest.mark.parametrize("branches", [1, 3])
def test_models_in_threads_decode_exactly_as_in_turn(lms, monkeypatch, branches):
    cfg = dict(tau=0.7, max_words=3, branches=branches, max_new_tokens=16)
    in_turn = adafuse.generate(lms, PROMPT, DecodeConfig(**cfg, execution=Execution(parallel="off")))

    threads_seen = set()
    real_map = parallel._map

    def spy(fn, models, threads, calls):
        return real_map(lambda *a: (threads_seen.add(threading.current_thread().name), fn(*a))[1],
                        models, threads, calls)
    monkeypatch.setattr(parallel, "_map", spy)
    threaded = adafuse.generate(lms, PROMPT, DecodeConfig(**cfg, execution=Execution(parallel="on")))

    assert any(name.startswith("adafuse-model") for name in threads_seen), threads_seen
    assert threaded.text == in_turn.text
    assert threaded.stats.forward_passes == in_turn.stats.forward_passes
    for a, b in zip(threaded.rounds, in_turn.rounds):
        assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
        assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-6)


def test_the_default_keeps_cpu_models_in_turn(lms):
    assert not parallel.use_threads([lm.device for lm in lms], all_fast=True)
    assert parallel.use_threads([lm.device for lm in lms], all_fast=False, mode="on")
