"""Task presets: realistic prompts (written for this project, in assets/examples/tasks.json)
with the decoding settings and reference answer that fit them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .metrics import TASKS

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TASKS_FILE = ASSETS / "examples" / "tasks.json"


@dataclass(frozen=True)
class TaskPreset:
    name: str
    task: str                       # qa | math | translation | chat: picks the metrics
    prompt: str
    reference: str = ""
    prompt_format: str = "raw"
    stop: tuple[str, ...] = field(default_factory=tuple)
    max_new_tokens: int = 64


def load_task_presets(path: Path = TASKS_FILE) -> dict[str, TaskPreset]:
    out = {}
    for item in json.loads(Path(path).read_text(encoding="utf-8")):
        preset = TaskPreset(item["name"], item["task"], item["prompt"], item.get("reference", ""),
                            item.get("prompt_format", "raw"), tuple(item.get("stop", ())),
                            int(item.get("max_new_tokens", 64)))
        if preset.task not in TASKS:
            raise ValueError(f"{path}: task preset {preset.name!r} has unknown task {preset.task!r}")
        out[preset.name] = preset
    return out


def stop_to_text(stop) -> str:
    """Stop strings as the UI shows them: one per line, newlines and tabs written as \\n, \\t."""
    return "\n".join(s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t") for s in stop)


def parse_stop(text) -> tuple[str, ...]:
    """Inverse of stop_to_text. Blank lines are ignored; a list (from the API) is taken as is."""
    if text is None:
        return ()
    if isinstance(text, (list, tuple)):
        return tuple(str(s) for s in text if str(s) != "")
    out = []
    for line in str(text).splitlines():
        if not line.strip():
            continue
        out.append(_unescape(line))
    return tuple(out)


def _unescape(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[line[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
