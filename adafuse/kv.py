"""KV-cache surgery on transformers' DynamicCache: crop, pick a row, fan out to several rows.

We work on the layers' key/value tensors directly rather than through `Cache.crop` & co, whose
signatures changed across transformers 5.x. Every layer is a plain (non-sliding) DynamicLayer:
sliding-window layers drop old positions and cannot be cropped back; the attention masks still
apply the model's sliding window, so the outputs are the same.
"""
from __future__ import annotations

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .fast import FastCache  # the static-buffer cache of the fast path (adafuse/fast.py)


def new_cache() -> DynamicCache:
    return DynamicCache()


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
        layer = DynamicLayer()
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
