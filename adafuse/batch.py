"""Item batching: several requests decode at once, and their forwards on one model run as one.

Where a decode step is mostly reading the weights (larger models, or any model on a GPU), a
forward over the rows of 8 requests costs little more than over one: the weights are read once for
8 tokens. Requests hold caches of different lengths, so a batched forward runs the model's layers
on all their tokens together, packed into one sequence (nothing padded), and only attention per
request, against that request's own cache (`RaggedCache`, `ragged_attention`): no cache is copied
beyond what the request's own forward would do, and each request attends exactly as it would alone.
Attention over a long cache is per request and is not shared; docs/EVAL.md has what this gives on
the embedded pair.

Each request runs in a thread of its own through the unchanged engine; `state.forward` hands its
forward to the thread's `Batch` and waits. When every thread of the batch is waiting, the last one
to arrive runs a step (`Batch._step`): the next jobs go to threads that finished one, and the
waiting forwards, grouped per model, run as one forward per group that is due. What runs depends
on the jobs alone, never on thread timing, so a batched run is reproducible. Only the linear layers
see other requests' tokens; a batched matrix product can differ from a one-row product in the last
float bits, so a batched run can differ from an unbatched one where two candidates tie to within
that (tests/test_batch.py compares them on the embedded pair).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from . import kv

ATTENTION = "adafuse_ragged"
# A forward of more tokens than this (a prompt's prefill) runs alone: it would gain nothing from
# company and would hold up the others' steps.
MAX_BATCHED_TOKENS = 256
# A forward passed over this many times runs at the next step whatever its group's size.
MAX_WAIT = 4

_local = threading.local()


def current() -> "Batch | None":
    """The batch the calling thread decodes in, if any."""
    return getattr(_local, "batch", None)


def slot() -> int | None:
    """The calling batch thread's index (0 .. width-1), for per-thread state such as a prompt cache."""
    return getattr(_local, "slot", None) if current() is not None else None


# ---------------------------------------------------------------- one batched forward

class RaggedCache:
    """The caches of the requests in one packed forward. The batch is one row: request i's tokens
    (its rows one after another, `t` tokens each) sit at `segments[i] = (offset, rows, t)`. `update`
    appends each request's new positions to that request's own cache, as its own forward would,
    and keeps the result for `ragged_attention`."""

    def __init__(self, caches: list, segments: list[tuple[int, int, int]]):
        self.caches, self.segments = caches, segments
        self.layer_kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.masks: dict[tuple[int, int | None], torch.Tensor | None] = {}   # the same in every layer

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.layer_kv[layer_idx] = [
            cache.update(_unpack(key_states, seg), _unpack(value_states, seg), layer_idx)
            for cache, seg in zip(self.caches, self.segments)]
        return key_states, value_states   # not read: ragged_attention takes each request's own

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(kv.cache_len(c) for c in self.caches)

    def mask(self, i: int, total: int, window: int | None, device) -> torch.Tensor | None:
        key = (i, window)
        if key not in self.masks:
            self.masks[key] = _mask(self.segments[i][2], total, window, device)
        return self.masks[key]


def _unpack(packed: torch.Tensor, segment: tuple[int, int, int]) -> torch.Tensor:
    """[1, heads, N, dim] -> one request's [rows, heads, t, dim] (a view)."""
    offset, rows, t = segment
    return packed[0, :, offset:offset + rows * t].unflatten(1, (rows, t)).transpose(0, 1)


def _mask(t: int, total: int, window: int | None, device) -> torch.Tensor | None:
    """The causal (and sliding-window) mask of t new positions over `total` keys, as transformers
    builds it for one request; None where every key is visible (it then skips the mask too)."""
    q = torch.arange(total - t, total, device=device)[:, None]
    k = torch.arange(total, device=device)[None]
    visible = k <= q
    if window is not None:
        visible &= k > q - window
    return None if bool(visible.all()) else visible[None, None]


def ragged_attention(module, query, key, value, attention_mask, *, adafuse_ragged: RaggedCache | None = None,
                     sliding_window: int | None = None, **kwargs):
    """Attention of each request's rows against its own keys and values, through transformers' own
    SDPA attention (the function a lone request uses), so that each request attends as it would alone."""
    if adafuse_ragged is None:
        raise RuntimeError("adafuse_ragged attention runs only inside adafuse.batch's batched forward")
    ragged = adafuse_ragged
    out = None
    for i, (seg, (k, v)) in enumerate(zip(ragged.segments, ragged.layer_kv[module.layer_idx])):
        offset, rows, t = seg
        mask = ragged.mask(i, k.shape[-2], sliding_window, query.device)
        o, _ = sdpa_attention_forward(module, _unpack(query, seg), k, v, mask,
                                      sliding_window=sliding_window, **kwargs)   # [rows, t, heads, dim]
        if out is None:
            out = query.new_empty(1, query.shape[2], *o.shape[2:])
        out[0, offset:offset + rows * t] = o.reshape(rows * t, *o.shape[2:])
    return out, None


AttentionInterface.register(ATTENTION, ragged_attention)


@contextmanager
def _attention(model, name: str):
    """Switch the model's attention implementation for one forward. Only the thread running a
    batch step calls the model while a batch runs, so nothing else sees the switch."""
    configs = getattr(model, "_adafuse_configs", None)
    if configs is None:   # every config object its modules read (a multimodal model has several)
        configs = model._adafuse_configs = list({id(m.config): m.config for m in model.modules()
                                                 if hasattr(m, "config")}.values())
    old = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = name
    try:
        yield
    finally:
        for c, impl in zip(configs, old):
            c._attn_implementation = impl


# SDPA kernels a forward may use on CUDA: all but the memory-efficient one. On an H200 (torch 2.11)
# that kernel returned attention outputs off by up to 20 (absolute; the math kernel is the
# reference) for Gemma-3-270M when 65 queries attend to a 1,469-key cache under its sliding-window
# mask: the shape the prompt cache gives a GSM8K item (the few-shot prefix cached, the question
# prefilled on top). Gemma's next word then changed ("Let" 0.32 instead of "For" 0.21): issue 15,
# item 4, docs/RESULTS.md. Unmasked calls keep flash/cuDNN; masked ones run in the math kernel.
SAFE_CUDA_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]


def safe_attention(device: torch.device):
    return sdpa_kernel(SAFE_CUDA_KERNELS) if device.type == "cuda" else nullcontext()


def plain_forward(lm, input_ids: torch.Tensor, cache, logits_to_keep: int) -> torch.Tensor:
    """One request's forward, extending `cache`; logits as the model returns them."""
    with safe_attention(lm.device):
        out = lm.model(input_ids=input_ids.to(lm.device), use_cache=True, logits_to_keep=logits_to_keep,
                       **{lm.cache_kwarg: cache})
    return out.logits


# Architectures whose logits are exactly lm_head(final hidden state), softcapped where the config
# says so: for these a batched forward computes logits only at the positions each request wants.
_HEAD_ONLY = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "smollm3"}


def _decoder_and_head(lm):
    model = lm.model
    if getattr(model.config, "model_type", None) not in _HEAD_ONLY:
        return None
    decoder, head = getattr(model, "model", None), model.get_output_embeddings()
    return None if decoder is None or head is None else (decoder, head)


def batched_forward(lm, requests: list["_Forward"]) -> list[torch.Tensor]:
    """The forwards of several requests on `lm` as one, packed: every request's tokens (all its
    rows) one after another in a single batch row, with the position ids each would have alone.
    Norms, MLPs and projections work token by token, so packing wastes nothing on padding; only
    attention is per request. Logits are computed only where each request wants them. Returns each
    request's logits as its own forward would give them: [rows, keep, vocab]."""
    if len(requests) == 1:
        r = requests[0]
        return [plain_forward(lm, r.input_ids, r.cache, r.keep)]
    ids, pos, segments, wanted = [], [], [], []
    offset = 0
    for r in requests:
        rows, t = r.input_ids.shape
        start = kv.cache_len(r.cache)
        ids.append(r.input_ids.reshape(-1).to(lm.device))   # a step's ids may already be on the GPU
        pos.append((start + torch.arange(t)).repeat(rows))
        segments.append((offset, rows, t))
        # the last `keep` positions of each of its rows
        wanted.append((offset + torch.arange(rows)[:, None] * t + torch.arange(t - r.keep, t)[None]).reshape(-1))
        offset += rows * t
    ragged = RaggedCache([r.cache for r in requests], segments)
    inputs = dict(input_ids=torch.cat(ids)[None], position_ids=torch.cat(pos)[None].to(lm.device),
                  use_cache=True, adafuse_ragged=ragged, **{lm.cache_kwarg: ragged})
    wanted = torch.cat(wanted).to(lm.device)
    parts = _decoder_and_head(lm)
    with _attention(lm.model, ATTENTION), safe_attention(lm.device):
        if parts is None:   # any other architecture: the model's own head at every position
            logits = lm.model(logits_to_keep=0, **inputs).logits[0, wanted]
        else:
            decoder, head = parts
            # Only the wanted positions go through the head: over Gemma's 262k vocabulary the head
            # costs more than the rest of the model.
            logits = head(decoder(**inputs).last_hidden_state[0, wanted])
            cap = getattr(lm.model.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
    out, at = [], 0
    for r in requests:
        rows = r.input_ids.shape[0]
        out.append(logits[at:at + rows * r.keep].view(rows, r.keep, -1))
        at += rows * r.keep
    return out


# ---------------------------------------------------------------- the batch of threads

class _Forward:
    def __init__(self, lm, input_ids: torch.Tensor, cache, logits_to_keep: int):
        t = input_ids.shape[1]
        self.lm, self.input_ids, self.cache = lm, input_ids, cache
        self.keep = t if logits_to_keep <= 0 else min(logits_to_keep, t)   # 0 means every position
        self.waited = 0                   # steps that ran without it
        self.done, self.result, self.error = False, None, None


class _NextJob:
    def __init__(self):
        self.done, self.result, self.error = False, None, None


class Batch:
    """Runs jobs (callables) on `width` threads whose forwards are batched step by step."""

    def __init__(self, jobs: Iterable[Callable[[], None]], width: int):
        if width < 1:
            raise ValueError("a batch needs at least one thread")
        self.jobs = iter(jobs)
        self.width = width
        self.active = width               # threads that have not yet been told there is no more work
        self.waiting: dict[int, object] = {}
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.steps = 0                    # batch steps run (each with one batched forward per model group)
        self.requests = 0                 # forwards the threads asked for
        self.forwards = 0                 # model forwards that ran them
        self.rows = 0                     # batch rows in those

    def forward(self, lm, input_ids: torch.Tensor, cache, logits_to_keep: int) -> torch.Tensor:
        """Called by state.forward in a batch thread: wait for the step that runs this forward."""
        return self._wait(_Forward(lm, input_ids, cache, logits_to_keep))

    def _wait(self, request):
        with self.cond:
            self.waiting[_local.slot] = request
            if len(self.waiting) == self.active:
                self._step()
            while not request.done:
                self.cond.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _step(self) -> None:
        """Run by the last thread to arrive, with the lock held; every other thread is waiting.

        Threads that asked for a job get the next one, in slot order. The waiting forwards are
        grouped per model; the group with the most rows runs, and so does any group holding a forward
        that has already been passed over MAX_WAIT times. The rest wait for a later step. Threads
        drift apart (one model's word takes more tokens than another's); passing over the smaller
        group lets them fall back into step, so forwards carry more rows, and the cap bounds the wait.
        """
        self.steps += 1
        groups: dict[int, list[tuple[int, _Forward]]] = {}
        for s in sorted(self.waiting):
            r = self.waiting[s]
            if isinstance(r, _NextJob):
                del self.waiting[s]
                r.result = None if self.error is not None else next(self.jobs, None)
                if r.result is None:
                    self.active -= 1
                r.done = True
            else:   # a prefill runs alone (MAX_BATCHED_TOKENS)
                key = id(r) if r.input_ids.shape[1] > MAX_BATCHED_TOKENS else id(r.lm)
                groups.setdefault(key, []).append((s, r))
        if groups:
            largest = max(groups.values(), key=lambda g: sum(r.input_ids.shape[0] for _, r in g))
            for group in groups.values():
                if group is not largest and all(r.waited < MAX_WAIT for _, r in group):
                    for _, r in group:
                        r.waited += 1
                    continue
                for s, _ in group:
                    del self.waiting[s]
                requests = [r for _, r in group]
                try:
                    with torch.inference_mode():
                        results = batched_forward(requests[0].lm, requests)
                    for r, res in zip(requests, results):
                        r.result = res
                    self.requests += len(requests)
                    self.forwards += 1
                    self.rows += sum(r.input_ids.shape[0] for r in requests)
                except BaseException as e:   # each of these threads raises it; the batch winds down
                    for r in requests:
                        r.error = e
                for r in requests:
                    r.done = True
        self.cond.notify_all()

    def _thread(self, slot: int) -> None:
        _local.batch, _local.slot = self, slot
        try:
            with torch.inference_mode():
                while True:
                    job = self._wait(_NextJob())
                    if job is None:
                        return
                    job()
        except BaseException as e:
            with self.cond:
                self.error = self.error or e
                self.active -= 1
                if self.waiting and len(self.waiting) == self.active:
                    self._step()
        finally:
            _local.batch = None

    def run(self) -> None:
        threads = [threading.Thread(target=self._thread, args=(i,), name=f"adafuse-batch-{i}", daemon=True)
                   for i in range(self.width)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error


def run_batched(jobs: Iterable[Callable[[], None]], width: int) -> Batch:
    """Run `jobs` with up to `width` at a time, their forwards batched; returns the finished Batch
    (its counters say how many forwards and rows ran). The first error raised stops the hand-out of
    jobs and is raised here once the running ones end."""
    batch = Batch(jobs, width)
    batch.run()
    return batch
