"""Task presets, stop-string round trip and the ZeroGPU shim."""
import importlib
import sys
import types

import pytest

from adafuse.config import DecodeConfig
from adafuse.ui import metrics, presets


def test_task_presets_cover_the_issue_and_validate():
    tasks = presets.load_task_presets()
    kinds = {p.task for p in tasks.values()}
    assert kinds == {"qa", "math", "translation", "chat"} and len(tasks) >= 5
    for p in tasks.values():
        assert p.prompt.strip()
        DecodeConfig(max_new_tokens=p.max_new_tokens, prompt_format=p.prompt_format, stop=p.stop).validated()
        assert presets.parse_stop(presets.stop_to_text(p.stop)) == p.stop
    math = next(p for p in tasks.values() if p.task == "math")
    assert metrics.final_number(math.reference) is not None
    assert next(p for p in tasks.values() if p.task == "chat").prompt_format == "chat"


def test_parse_stop():
    assert presets.parse_stop("\\nQuestion:\n\n###\n") == ("\nQuestion:", "###")
    assert presets.parse_stop("a\\\\nb") == ("a\\nb",)
    assert presets.parse_stop(["\n", ""]) == ("\n",)
    assert presets.parse_stop(None) == ()
    assert presets.stop_to_text(("\n\n", "tab\there")) == "\\n\\n\ntab\\there"


def test_spaces_shim_is_a_noop_without_the_package():
    from adafuse.ui import spaces_shim
    if spaces_shim.AVAILABLE:
        pytest.skip("the spaces package is installed here")

    def f(x):
        return x + 1

    assert spaces_shim.gpu(f) is f
    assert spaces_shim.gpu(duration=30)(f) is f
    assert spaces_shim.gpu(duration=lambda *a: 10)(f) is f


def test_spaces_shim_uses_spaces_gpu_in_both_forms(monkeypatch):
    calls = []

    def GPU(fn=None, duration=None):
        if fn is not None:
            calls.append(("bare", None))
            return fn
        calls.append(("duration", duration))
        return lambda g: g

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    from adafuse.ui import spaces_shim
    shim = importlib.reload(spaces_shim)
    try:
        assert shim.AVAILABLE

        @shim.gpu
        def a():
            return 1

        @shim.gpu(duration=45)
        def b():
            return 2

        assert (a(), b()) == (1, 2)
        assert calls == [("bare", None), ("duration", 45)]
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(spaces_shim)
    assert not spaces_shim.AVAILABLE


def test_gpu_seconds_grows_with_tokens_and_models():
    from adafuse.ui.spaces_shim import gpu_seconds
    assert gpu_seconds(64, 2) < gpu_seconds(256, 2) < gpu_seconds(256, 3) <= 300
    assert gpu_seconds(64, 2) < gpu_seconds(64, 2, decodes=6)
    assert gpu_seconds(100000, 8) == 300
