"""KV-cache surgery on transformers' DynamicCache: crop, pick a row, fan out to several rows.

We work on the layers' key/value tensors directly rather than through `Cache.crop` & co, whose
signatures changed across transformers 5.x. Every layer is a plain (non-sliding) DynamicLayer:
sliding-window layers drop old positions and cannot be cropped back; the attention masks still
apply the model's sliding window, so the outputs are the same.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .fast import FastCache  # the static-buffer cache of the fast path (adafuse/fast.py)
from .models import attention_shape


# Room a buffer gets past what it holds when it is (re)allocated: a round's decode steps then append
# in place. A buffer is reallocated (one copy) when a layer outgrows it or no longer ends where it does.
HEADROOM = 128


class GrowingLayer(DynamicLayer):
    """A DynamicLayer that appends in place into buffers with room to spare. DynamicLayer
    concatenates, which copies the whole cache at every decode step: at 1,500 cached positions that
    was a fifth of a Gemma-3-270M step on CPU.

    Append-only: a buffer position is written once. A layer whose keys are not exactly the written
    part of its buffer (cropped, or made of another cache's views by select_row / fan_out) copies
    into a fresh buffer on its next update. So a view that anyone took of a buffer (a PromptCache
    entry, a row picked from a batch) never changes under them.
    """
    _buffers = None     # [keys buffer, values buffer, positions written]

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys = self.keys
        n, t = (keys.shape[-2] if keys.dim() == 4 else 0), key_states.shape[-2]
        buf = self._buffers
        if (buf is None or buf[2] != n or buf[0].shape[-2] < n + t or buf[0].shape[0] != key_states.shape[0]
                or (n and keys.data_ptr() != buf[0].data_ptr())
                # a buffer made under inference_mode cannot be written outside it (a caller driving
                # propose/score directly): copy out, as concatenation would
                or (buf[0].is_inference() and not torch.is_inference_mode_enabled())):
            rows, heads, _, dim = key_states.shape
            buf = [key_states.new_empty(rows, heads, n + t + HEADROOM, dim),
                   value_states.new_empty(rows, heads, n + t + HEADROOM, value_states.shape[-1]), n]
            if n:
                buf[0][:, :, :n] = keys
                buf[1][:, :, :n] = self.values
            self._buffers = buf
        buf[0][:, :, n:n + t] = key_states
        buf[1][:, :, n:n + t] = value_states
        buf[2] = n + t
        self.keys, self.values = buf[0][:, :, :n + t], buf[1][:, :, :n + t]
        return self.keys, self.values


def bytes_per_token(lm) -> int:
    """Bytes one position of `lm`'s cache holds: keys and values of every layer (all layers are
    full ones here, sliding-window layers included: see the module docstring)."""
    cfg = lm.model.config.get_text_config() if hasattr(lm.model.config, "get_text_config") else lm.model.config
    kv_heads, head_dim = attention_shape(cfg)
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * lm.dtype.itemsize


def new_cache() -> DynamicCache:
    cache = DynamicCache()
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = GrowingLayer
    return cache


def cache_len(cache: DynamicCache) -> int:
    if isinstance(cache, FastCache):
        return cache.length
    for layer in cache.layers:
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            return layer.keys.shape[-2]
    return 0


def crop(cache: DynamicCache, length: int) -> None:
    """Keep the first `length` positions, in place (slicing is a view: no copy)."""
    if isinstance(cache, FastCache):
        return cache.crop(length)
    for layer in cache.layers:
        if layer.is_initialized and layer.keys is not None and layer.keys.shape[-2] > length:
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


def _from_tensors(pairs) -> DynamicCache:
    cache = DynamicCache()
    layers = []
    for keys, values in pairs:
        layer = GrowingLayer()
        if keys is not None:
            layer.device = keys.device
            layer.keys, layer.values, layer.is_initialized = keys, values, True
        layers.append(layer)
    cache.layers = layers
    return cache


def select_row(cache: DynamicCache, row: int, length: int) -> DynamicCache:
    """A batch-1 cache holding row `row`'s first `length` positions (views, no copy)."""
    if isinstance(cache, FastCache):
        return cache.select_row(row, length)
    return _from_tensors((l.keys[row:row + 1, :, :length], l.values[row:row + 1, :, :length])
                         if l.is_initialized else (None, None) for l in cache.layers)


def fan_out(cache: DynamicCache, rows: int, length: int) -> DynamicCache:
    """A `rows`-row cache whose rows share the first `length` positions of a batch-1 cache.

    `expand` makes views, so the shared prefix is not copied here; the first forward on the new
    cache concatenates, which copies once. The source cache is left untouched.
    """
    if isinstance(cache, FastCache):
        return cache.fan_out(rows, length)
    return _from_tensors((l.keys[:, :, :length].expand(rows, -1, -1, -1),
                          l.values[:, :, :length].expand(rows, -1, -1, -1))
                         if l.is_initialized else (None, None) for l in cache.layers)
