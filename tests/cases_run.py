"""One tiny evaluation run on the real embedded pair, made by the harness's own CLI once per test
session and shared by the cases tests and the browser test: three questions on which the two
models answer differently, AdaFuse and each model alone, six new tokens each."""
import json
from pathlib import Path

import adafuse
from adafuse.eval import cli

PROMPT = ("Question: What is the capital of Italy?\nAnswer: Rome\n\n"
          "Question: Who wrote the novel Pride and Prejudice?\nAnswer: Jane Austen")
ITEMS = [{"question": "Which planet is known as the Red Planet?", "answer": "Mars"},
         {"question": "In which country is the city of Timbuktu?", "answer": "Mali"},
         {"question": "What is the capital of Canada?", "answer": ["Ottawa"]}]
ADAFUSE = "adafuse_tau0.7_M3_B1"
_made: dict[str, Path] = {}


def eval_run(lms, base: Path) -> Path:
    """The run's --out folder (made on the first call of the session)."""
    if "out" not in _made:
        root = base / "cases_run"
        root.mkdir(parents=True, exist_ok=True)
        (root / "qa.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
        (root / "prompt.txt").write_text(PROMPT)
        out = root / "out"
        by_name = {lm.name: lm for lm in lms}
        original = cli._engine
        cli._engine = lambda models, args, device: (
            lambda ms, prompt, cfg: adafuse.generate([by_name[m] for m in ms], prompt, cfg), list(by_name.values()))
        try:
            rc = cli.main(["--task", "custom", "--data", str(root / "qa.jsonl"), "--prompt-file",
                           str(root / "prompt.txt"), "--metric", "em", "--stop", "\\n", "--max-new-tokens", "6",
                           "--models", ",".join(by_name), "--methods", "adafuse,greedy", "--out", str(out),
                           "--no-progress"])
        finally:
            cli._engine = original
        assert rc == 0
        _made["out"] = out
    return _made["out"]


def records(out: Path, slug: str) -> list[dict]:
    """The run's records of one method, read naively (whole lines, traces included)."""
    return [json.loads(x) for x in (out / "custom" / f"{slug}.jsonl").read_text().splitlines()]
