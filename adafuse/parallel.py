"""Each model's share of a round at the same time, when every model sits on a GPU of its own.

A round's proposals are independent across models, and so is each model's scoring of the others'
candidates: only the merge in between and the choice after need all of them. With one model per
GPU, a thread per model keeps both GPUs busy at once. On the fast path a decode step is a graph
replay and one small device-to-host copy, both of which release the GIL, so the Python between
them is short: measured on two H200s, threads overlap the two models' decode loops to 0.75-0.90
of perfect, processes to 0.98, and the whole round to 0.68x the sequential time
(docs/PERFORMANCE.md). On the eager path every forward is Python-bound and threads lose. Results
are identical to running the models in turn.

ADAFUSE_PARALLEL=0 runs the models in turn everywhere; =1 uses threads even when models share a
device (for measurement); unset ("auto") uses threads only with one distinct CUDA device per model.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch

from . import batch

_pool: ThreadPoolExecutor | None = None


def use_threads(devices: Sequence[torch.device]) -> bool:
    env = os.environ.get("ADAFUSE_PARALLEL", "auto").strip().lower()
    if len(devices) < 2 or env in ("0", "off", "no", "false"):
        return False
    if batch.current() is not None:
        # In a batch (adafuse/batch.py) every forward must go through the batch's steps, which
        # already keep the devices busy with several requests; a side thread would bypass them.
        return False
    if env in ("1", "on", "yes", "true", "threads"):
        return True
    return all(d.type == "cuda" for d in devices) and len(set(devices)) == len(devices)


def map_models(fn: Callable, devices: Sequence[torch.device], *arg_lists) -> list:
    """[fn(*args) for args in zip(*arg_lists)], one thread per model where use_threads() says so."""
    calls = list(zip(*arg_lists))
    if not use_threads(devices):
        return [fn(*args) for args in calls]
    global _pool
    if _pool is None or _pool._max_workers < len(calls):
        _pool = ThreadPoolExecutor(max_workers=max(len(calls), 2), thread_name_prefix="adafuse-model")
    futures = [_pool.submit(_call, fn, args) for args in calls]
    return [f.result() for f in futures]


def _call(fn: Callable, args: tuple):
    with torch.inference_mode():   # thread-local: the caller's inference mode does not carry over
        return fn(*args)
