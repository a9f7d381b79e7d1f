"""Benchmark tasks: where their items live, how a prompt is built, where decoding stops, and how
an answer is read out of the generated text.

Files follow ../shared/bench: `<name>_dev.jsonl` with one {"question", "answer"} object a line
(`answer` a string or a list of accepted strings) and `<name>_prompt.txt` with the few-shot prompt.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import AdafuseError
from . import metrics

QA_TEMPLATE = "{prompt}\n\nQuestion: {question}\nAnswer:"
GSM8K_TEMPLATE = "{prompt}\n\nQuestion: {question}\nLet's think step by step\n"
# The FLORES prompt files end in "Now, translate the following sentences:" (no newline): the
# source sentence follows. Labelled source/target lines make small base models translate instead
# of copying the source, which they do with a bare "{prompt}\n{question}\n" (tried on the pair).
FLORES_DE_EN_TEMPLATE = "{prompt}\n\nGerman: {question}\nEnglish:"
FLORES_EN_DE_TEMPLATE = "{prompt}\n\nEnglish: {question}\nGerman:"
TRANSLATION_TEMPLATE = "{prompt}\n\nSource: {question}\nTranslation:"

METRICS = ("em", "f1", "number", "bleu")
ENV_DATA_DIR = "ADAFUSE_BENCH_DIR"


class EvalDataError(AdafuseError, ValueError):
    """Benchmark data missing or unusable."""


@dataclass(frozen=True)
class TaskSpec:
    """What is fixed about a task; the items are read separately."""
    name: str
    metric: str                   # em | f1 | number | bleu: how answers are scored
    template: str                 # filled with {prompt} and {question}
    stop: tuple[str, ...]         # decoding stops at the first of these
    max_new_tokens: int
    stem: str = ""                # file stem in the bench dir: <stem>_dev.jsonl, <stem>_prompt.txt


# Stop strings: QA answers of NQ/TriviaQA sit on the "Answer:" line; SQuAD's few-shot examples put
# the answer on the line after "Answer:", so a single newline must not stop it. GSM8K solutions
# are one step a line and examples are separated by blank lines.
BUILTIN = {
    "nq": TaskSpec("nq", "em", QA_TEMPLATE, ("\n",), 32, "nq"),
    "triviaqa": TaskSpec("triviaqa", "em", QA_TEMPLATE, ("\n",), 32, "triviaqa"),
    "squad": TaskSpec("squad", "em", QA_TEMPLATE, ("\n\n", "\nQuestion:"), 32, "squad"),
    "gsm8k": TaskSpec("gsm8k", "number", GSM8K_TEMPLATE, ("\n\n", "\nQuestion:"), 256, "gsm8k"),
    "flores-de-en": TaskSpec("flores-de-en", "bleu", FLORES_DE_EN_TEMPLATE, ("\n",), 128, "flores_de_en"),
    "flores-en-de": TaskSpec("flores-en-de", "bleu", FLORES_EN_DE_TEMPLATE, ("\n",), 128, "flores_en_de"),
}
TASK_NAMES = tuple(BUILTIN)
DEFAULT_TEMPLATES = {"em": QA_TEMPLATE, "f1": QA_TEMPLATE, "number": GSM8K_TEMPLATE, "bleu": TRANSLATION_TEMPLATE}
DEFAULT_STOPS = {"em": ("\n\n", "\nQuestion:"), "f1": ("\n\n", "\nQuestion:"),
                 "number": ("\n\n", "\nQuestion:"), "bleu": ("\n",)}
DEFAULT_MAX_NEW_TOKENS = {"em": 32, "f1": 32, "number": 256, "bleu": 128}


@dataclass(frozen=True)
class Item:
    key: str                 # "<line>:<hash of question>": stable across runs, names the item in results
    line: int                # 1-based line in the JSONL file
    question: str
    references: tuple[str, ...]


@dataclass
class Task:
    spec: TaskSpec
    few_shot: str                       # the prompt file's text ("" for none)
    items: list[Item]
    data_path: str
    problems: list[str] = field(default_factory=list)   # malformed lines, "file:line: why"

    @property
    def name(self) -> str:
        return self.spec.name

    def prompt(self, item: Item) -> str:
        text = self.spec.template.format(prompt=self.few_shot, question=item.question)
        return text if self.few_shot else text.lstrip("\n")

    def answer(self, generated: str) -> str:
        """The part of the generated text that is scored."""
        if self.spec.metric == "number":
            return metrics.final_number(generated) or ""
        return first_line(generated)

    def score(self, generated: str, item: Item) -> dict[str, float]:
        """Per-item metric values (translation corpus scores are computed in the report)."""
        answer = self.answer(generated)
        metric = self.spec.metric
        if metric in ("em", "f1"):
            return {"em": metrics.exact_match(answer, list(item.references)),
                    "f1": metrics.token_f1(answer, list(item.references))}
        if metric == "number":
            return {"accuracy": metrics.number_accuracy(generated, item.references[0])}
        return {"chrf": metrics.sentence_chrf(answer, item.references[0]),
                "bleu": metrics.sentence_bleu(answer, item.references[0])}

    def fingerprint(self) -> dict:
        """What must not change between a run and its resumption."""
        return {"task": self.name, "metric": self.spec.metric, "template": self.spec.template,
                "stop": list(self.spec.stop), "max_new_tokens": self.spec.max_new_tokens,
                "prompt_sha1": _sha1(self.few_shot)[:12]}


def first_line(text: str) -> str:
    """The first non-empty line, stripped: a QA answer or a translation."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def default_data_dir() -> Path:
    """$ADAFUSE_BENCH_DIR, else ../shared/bench beside the repository."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "bench"


def load_task(name: str, data_dir: str | os.PathLike | None = None, *, max_new_tokens: int | None = None,
              stop: tuple[str, ...] | None = None) -> Task:
    """A built-in task read from the bench dir."""
    if name not in BUILTIN:
        raise EvalDataError(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)} or custom")
    spec = BUILTIN[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    data, prompt = root / f"{spec.stem}_dev.jsonl", root / f"{spec.stem}_prompt.txt"
    if not root.is_dir():
        raise EvalDataError(f"benchmark directory not found: {root} (expected {data.name} and {prompt.name} "
                            f"there); pass --data-dir DIR or set {ENV_DATA_DIR}")
    for path in (data, prompt):
        if not path.is_file():
            raise EvalDataError(f"task {name}: {path} not found; pass --data-dir DIR")
    spec = _override(spec, max_new_tokens, stop)
    items, problems = read_items(data, spec.metric)
    return Task(spec, prompt.read_text(encoding="utf-8"), items, str(data), problems)


def load_custom(data: str | os.PathLike, metric: str, *, prompt_file: str | None = None,
                template: str | None = None, max_new_tokens: int | None = None,
                stop: tuple[str, ...] | None = None, name: str = "custom") -> Task:
    """A user's JSONL in the bench layout, scored with `metric`."""
    if metric not in METRICS:
        raise EvalDataError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    path = Path(data)
    if not path.is_file():
        raise EvalDataError(f"data file not found: {path}")
    few_shot = ""
    if prompt_file:
        if not Path(prompt_file).is_file():
            raise EvalDataError(f"prompt file not found: {prompt_file}")
        few_shot = Path(prompt_file).read_text(encoding="utf-8")
    template = template or DEFAULT_TEMPLATES[metric]
    if "{question}" not in template:
        raise EvalDataError("a template needs a {question} field")
    try:
        template.format(prompt="", question="")
    except (KeyError, IndexError, ValueError) as e:
        raise EvalDataError(f"bad template {template!r}: only {{prompt}} and {{question}} may be used ({e})") from None
    spec = TaskSpec(name, metric, template, DEFAULT_STOPS[metric], DEFAULT_MAX_NEW_TOKENS[metric])
    spec = _override(spec, max_new_tokens, stop)
    items, problems = read_items(path, metric)
    return Task(spec, few_shot, items, str(path), problems)


def read_items(path: str | os.PathLike, metric: str) -> tuple[list[Item], list[str]]:
    """Items of a JSONL file and a list of problems ("file:line: why") for lines it skipped.
    Blank lines are ignored silently; any other unusable line is reported and skipped."""
    items, problems = [], []
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            why = None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                obj, why = None, f"not valid JSON ({e.msg} at column {e.colno})"
            if why is None:
                why = _check(obj, metric)
            if why:
                problems.append(f"{path.name}:{line_no}: {why}; skipped")
                continue
            refs = obj["answer"] if isinstance(obj["answer"], list) else [obj["answer"]]
            question = obj["question"]
            items.append(Item(f"{line_no}:{_sha1(question)[:10]}", line_no, question, tuple(refs)))
    if not items:
        raise EvalDataError(f"{path}: no usable items" + (f" ({problems[0]})" if problems else ""))
    return items, problems


def _check(obj, metric: str) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    q, a = obj.get("question"), obj.get("answer")
    if not isinstance(q, str) or not q.strip():
        return 'missing or empty "question"'
    if isinstance(a, str):
        a = [a]
    if not isinstance(a, list) or not a or not all(isinstance(x, str) for x in a):
        return '"answer" must be a string or a non-empty list of strings'
    if metric == "number" and metrics.final_number(a[0]) is None:
        return '"answer" has no final number'
    return None


def _override(spec: TaskSpec, max_new_tokens: int | None, stop: tuple[str, ...] | None) -> TaskSpec:
    if max_new_tokens is not None:
        spec = replace(spec, max_new_tokens=int(max_new_tokens))
    if stop is not None:
        spec = replace(spec, stop=tuple(stop))
    return spec


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
