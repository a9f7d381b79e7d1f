"""The set of models the app holds in memory: loaded on first use, kept across requests, and
swapped (under a lock) only when the selection changes. Models shared by the old and new
selection are kept; the others are released before the new ones load, so peak memory stays
near one set."""
from __future__ import annotations

import gc
import os
import re
import threading
from pathlib import Path

from ..errors import InputError, ModelLoadError

ALLOW_CUSTOM_ENV = "ADAFUSE_ALLOW_CUSTOM_MODELS"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def custom_models_allowed() -> bool:
    return os.environ.get(ALLOW_CUSTOM_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_model_names(names: list[str], presets, allow_custom: bool | None = None) -> list[str]:
    """Server-side check of a model selection (the API can send anything): at least two
    distinct models, each a preset, or, when the operator allows it, an HF id or local path."""
    allow_custom = custom_models_allowed() if allow_custom is None else allow_custom
    picked = []
    for raw in names:
        name = "" if raw is None else str(raw).strip()
        if not name or name.lower() in ("(none)", "none"):
            continue
        if name not in presets:
            if not allow_custom:
                known = ", ".join(sorted(presets))
                raise InputError(f"unknown model {name!r}; choose one of: {known} "
                                 f"(custom Hugging Face ids and local paths need {ALLOW_CUSTOM_ENV}=1 on the server)")
            if not (_HF_ID.match(name) or Path(name).expanduser().is_dir()):
                raise InputError(f"{name!r} is neither a model preset, a Hugging Face id (owner/name) "
                                 "nor an existing local model folder")
        if name in picked:
            raise InputError(f"model {name!r} is selected twice; pick distinct models")
        picked.append(name)
    if len(picked) < 2:
        raise InputError("pick at least two different models to ensemble")
    return picked


class ModelStore:
    """Thread-safe cache of loaded models keyed by name. `load_one(name, progress)` returns an LM;
    `unavailable(name)` (optional) says why a name cannot load, before anything is released."""

    def __init__(self, load_one, unavailable=None):
        self._load_one = load_one
        self._unavailable = unavailable
        self._lock = threading.Lock()
        self._lms: dict[str, object] = {}

    @property
    def loaded(self) -> list[str]:
        return list(self._lms)

    def check(self, names: list[str]) -> None:
        """Raise ModelLoadError when a name that is not loaded cannot load here (not cached,
        offline), without reading a weight: a run asks before it says "Loading…"."""
        for name in names if self._unavailable else []:
            why = name not in self._lms and self._unavailable(name)
            if why:
                raise ModelLoadError(why)

    def get(self, names: list[str], progress=None) -> list:
        """The models of `names`, loading the missing ones. A selection that cannot load must not
        cost the user the models already loaded: it is refused before any is released. (A load
        that fails later, on a corrupt file say, loses the released ones: keeping them would
        double the peak memory of every swap.)"""
        with self._lock:
            if list(self._lms) != list(names):
                self.check(names)
                for name in [n for n in self._lms if n not in names]:
                    del self._lms[name]          # a request still decoding keeps its own reference
                free_memory()
                for i, name in enumerate(names):
                    if name not in self._lms:
                        if progress:
                            progress(f"loading {name} ({i + 1}/{len(names)})", i / len(names))
                        self._lms[name] = self._load_one(name, progress)
                self._lms = {n: self._lms[n] for n in names}
            return [self._lms[n] for n in names]

    def clear(self):
        with self._lock:
            self._lms.clear()
            free_memory()


def free_memory():
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - freeing is best effort
        pass
