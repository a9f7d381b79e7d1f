"""ZeroGPU support: `gpu` is `spaces.GPU` when the `spaces` package is installed (Hugging Face
Spaces) and a no-op otherwise. Both decorator forms work: `@gpu` and `@gpu(duration=...)`,
where duration is seconds or a callable taking the decorated function's arguments."""
from __future__ import annotations

import functools

try:  # only present on Hugging Face Spaces
    import spaces as _spaces
except ImportError:  # pragma: no cover - depends on the environment
    _spaces = None

AVAILABLE = _spaces is not None


def gpu(fn=None, *, duration=None):
    if fn is not None and callable(fn):          # bare @gpu
        return _wrap(fn, duration)
    return functools.partial(_wrap, duration=duration)   # @gpu(duration=...)


def _wrap(fn, duration=None):
    if _spaces is None:
        return fn
    if duration is None:
        return _spaces.GPU(fn)
    return _spaces.GPU(duration=duration)(fn)


def gpu_seconds(max_new_tokens: int, n_models: int, decodes: int = 1, per_token: float = 0.15,
                base: float = 20.0, cap: float = 300.0) -> int:
    """GPU time to ask for: every committed token costs each model a few forward passes, in
    each of `decodes` decodes (the comparison runs several)."""
    work = per_token * max(1, int(max_new_tokens)) * max(1, int(n_models)) * max(1, int(decodes))
    return int(min(cap, base + work))
