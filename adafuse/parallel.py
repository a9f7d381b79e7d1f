"""Each model's share of a round at the same time, on GPUs.

A round's proposals are independent across models, and so is each model's scoring of the others'
candidates: only the merge in between and the choice after need all of them. A thread per model
runs its share on a CUDA stream of its own, so the models' kernels overlap whether they sit on two
GPUs or share one: a batch-1 decode step of a 7-8B model reads its weights at about half the
H200's bandwidth (a 6.0 ms graph replay against 3.35 ms of weight reads), which leaves the other
half to the other model. On the fast path a decode step is a graph replay and one small
device-to-host copy, both of which release the GIL, so the Python between them is short; the
tokenizer's encode (scoring) releases it too. On the eager path every forward is Python-bound and
the GIL serialises the threads: there they pay only with one GPU per model. Results are identical
to running the models in turn (each model's kernels and their order are the same).

Execution.parallel (config.py) = "off" runs the models in turn everywhere; "on" uses threads always
(for measurement, and for the tests on CPU, where no stream is involved); "auto" uses threads when
every model is on CUDA and either each has a GPU of its own or every model decodes on the fast path
(its cache is a fast.FastCache).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Sequence

import torch

from . import batch, fast
from .config import Execution

_pool: ThreadPoolExecutor | None = None


def use_threads(devices: Sequence[torch.device], all_fast: bool, mode: str = "auto") -> bool:
    """Whether models on `devices` run their shares in threads under Execution.parallel = `mode`;
    `all_fast`: every one decodes on the fast path."""
    if len(devices) < 2 or mode == "off":
        return False
    if batch.current() is not None:
        # In a batch (adafuse/batch.py) every forward must go through the batch's steps, which
        # already keep the devices busy with several requests; a side thread would bypass them.
        return False
    if mode == "on":
        return True
    return all(d.type == "cuda" for d in devices) and (len(set(devices)) == len(devices) or all_fast)


def map_models(fn: Callable, execution: Execution, states: Sequence, *arg_lists) -> list:
    """[fn(state, *args) for state, args in zip(states, *arg_lists)], one thread per model (each on
    its model's stream) where use_threads() says so for `execution`."""
    threads = use_threads([s.lm.device for s in states], all(isinstance(s.cache, fast.FastCache) for s in states),
                          execution.parallel)
    return _map(fn, [s.lm for s in states], threads, list(zip(states, *arg_lists)))


def map_lms(fn: Callable, execution: Execution, lms: Sequence, *arg_lists) -> list:
    """map_models before the models' states exist (the prompt's prefill): [fn(lm, *args) ...]."""
    threads = use_threads([lm.device for lm in lms], all(fast.enabled(lm, execution.fast) for lm in lms),
                          execution.parallel)
    return _map(fn, lms, threads, list(zip(lms, *arg_lists)))


def _map(fn: Callable, lms: Sequence, threads: bool, calls: list[tuple]) -> list:
    if not threads:
        return [fn(*args) for args in calls]
    global _pool
    if _pool is None or _pool._max_workers < len(calls):
        _pool = ThreadPoolExecutor(max_workers=max(len(calls), 2), thread_name_prefix="adafuse-model")
    # Stream order: each model's stream starts after what the caller queued (last round's commit),
    # and the caller's stream continues after every model's work; a tensor made on one stream and
    # used or freed on the other is thereby never reused early by the caching allocator.
    callers = [torch.cuda.current_stream(lm.device) if lm.device.type == "cuda" else None for lm in lms]
    futures = [_pool.submit(_call, fn, args, lm, caller) for args, lm, caller in zip(calls, lms, callers)]
    wait(futures)
    for lm, caller in zip(lms, callers):
        if caller is not None:
            caller.wait_stream(model_stream(lm))
    return [f.result() for f in futures]


def model_stream(lm) -> torch.cuda.Stream:
    """The CUDA stream a model's share of a round runs on (made once per model)."""
    stream = getattr(lm, "_round_stream", None)
    if stream is None:
        stream = lm._round_stream = torch.cuda.Stream(lm.device)
    return stream


def _call(fn: Callable, args: tuple, lm, caller: torch.cuda.Stream | None):
    # thread-local: the caller's inference mode, device and stream do not carry over
    with torch.inference_mode():
        if caller is None:   # a CPU model (parallel="on"): no streams
            return fn(*args)
        stream = model_stream(lm)
        with torch.cuda.device(lm.device), torch.cuda.stream(stream):
            stream.wait_stream(caller)
            return fn(*args)
