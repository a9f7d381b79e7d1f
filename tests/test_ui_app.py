"""The app's wiring, without serving it: endpoints, shared decode concurrency, Stop cancels no
event, custom model ids only when the operator allows them."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402
from adafuse.ui.callbacks import Studio  # noqa: E402


def build(monkeypatch, allow_custom: bool):
    if allow_custom:
        monkeypatch.setenv("ADAFUSE_ALLOW_CUSTOM_MODELS", "1")
    else:
        monkeypatch.delenv("ADAFUSE_ALLOW_CUSTOM_MODELS", raising=False)
    return app.build(Studio()).get_config_file()


@pytest.mark.parametrize("allow_custom", [False, True])
def test_model_boxes_take_custom_ids_only_when_allowed(monkeypatch, allow_custom):
    cfg = build(monkeypatch, allow_custom)
    boxes = {c["props"]["label"]: c["props"] for c in cfg["components"] if c.get("type") == "dropdown"}
    for label in ("Model A", "Model B", "Model C (optional)"):
        assert boxes[label]["allow_custom_value"] is allow_custom
    assert (boxes["Model A"]["value"], boxes["Model B"]["value"]) == ("gemma3-270m", "qwen2.5-coder-0.5b-instruct")


def test_stop_cancels_no_event(monkeypatch):
    """Stop reaches the running decodes through the Studio's sessions: they end after the current
    round and render their own end. Gradio's `cancels=` would kill them mid-stream (issue 16)."""
    cfg = build(monkeypatch, False)
    deps = cfg["dependencies"]
    assert not [d for d in deps if d.get("cancels")]
    stop = next(d for d in deps if d.get("api_name") == "stop")
    assert stop["queue"] is False and not stop["outputs"]
    named = {d.get("api_name") for d in deps}
    assert {"run", "compare", "task_preset", "stop"} <= named


def test_decodes_share_one_concurrency_limit(monkeypatch):
    monkeypatch.setenv("ADAFUSE_CONCURRENCY", "3")
    demo = app.build(Studio())
    decode_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == "decode"]
    assert len(decode_fns) >= 5                 # run (button, enter), auto-compare x2, compare
    assert {fn.concurrency_limit for fn in decode_fns} == {3}


@pytest.mark.parametrize("root", [None, "runs"])
def test_the_folder_box_shows_only_when_the_operator_sets_a_runs_root(monkeypatch, root):
    """Issue 16, item 11: opening folders by path is off unless enabled, and no label names a
    server path."""
    if root:
        monkeypatch.setenv("ADAFUSE_RUNS_ROOT", root)
    else:
        monkeypatch.delenv("ADAFUSE_RUNS_ROOT", raising=False)
    cfg = build(monkeypatch, False)
    box = {c["props"].get("elem_id"): c["props"] for c in cfg["components"]}
    assert box["cases-folder"]["visible"] is bool(root) and box["cases-open"]["visible"] is bool(root)
    assert str(Path.cwd()) not in json.dumps(cfg, default=str)
