"""Open evaluation results for case inspection: a run folder (what `python -m adafuse eval --out`
writes), per-item JSONL files, or exported trace JSON files.

Opening reads only the small head of each result line (question, answer, metrics: everything
before its `"trace"`) and remembers where the line lives. A trace is parsed when it is shown, and
the one method being inspected is summarised once (rounds, branched rounds, closest fused-score
margin), so a run of thousands of items opens in about a second and holds no trace in memory.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdafuseError
from ..trace import Trace

# The runner writes "trace" as the last key. Inside JSON strings every quote is escaped, so these
# bytes can only be that key: cutting the line there leaves the head as a JSON object.
TRACE_KEY = b', "trace": '
REQUIRED = {"key": str, "task": str, "prediction": str, "metrics": dict}
MODE_ORDER = {"adafuse": 0, "fixed": 1, "unite": 2, "gac": 3, "greedy": 4}
# The per-item metric that says right or wrong, by the task's metric (adafuse/eval/tasks.py).
# Translation compares sentence chrF: sentence BLEU is mostly zeros on short outputs.
OUTCOME_METRIC = {"em": "em", "f1": "f1", "number": "accuracy", "bleu": "chrf"}
BINARY_METRICS = {"em", "accuracy"}
NOTES_FILE = "notes.json"        # a run folder may carry a note per case (the gallery does)
WHOLE_JSON_LIMIT = 256 << 20     # a single-JSON file (trace, record) larger than this is refused
SHOWN_WARNINGS = 6
TRACE_TASK = "trace"             # the task of an exported trace file's one case; its key is the file name


class CasesError(AdafuseError, ValueError):
    """A path or file that cannot be opened as evaluation results or a trace."""


@dataclass(frozen=True, slots=True)
class Where:
    """The bytes of one result line (or a whole trace file): its trace is read from there."""
    path: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class MethodInfo:
    slug: str                       # file name stem, says every setting: adafuse_tau0.7_M3_B1
    label: str                      # what tables show: adafuse, fixed:2, greedy:gemma3-270m
    mode: str                       # adafuse | fixed | greedy
    models: tuple[str, ...]


@dataclass(slots=True)
class Result:
    """One method's answer to one item, without its trace."""
    slug: str
    prediction: str
    answer: str                     # the part that was scored
    metrics: dict[str, float]
    error: str | None
    seconds: float
    rounds: int
    where: Where | None             # None: no trace (the engine refused the item)


@dataclass(slots=True)
class Case:
    """One item and every method's result on it."""
    index: int                      # position in Run.cases
    task: str
    key: str
    line: int
    question: str
    references: list[str]
    metric: str                     # per-item metric that outcomes compare: em, accuracy, chrf, ...
    results: dict[str, Result] = field(default_factory=dict)
    note: str = ""

    @property
    def name(self) -> str:
        return self.key if self.task == TRACE_TASK else f"{self.task}:{self.line}"


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """What the list needs from one trace."""
    rounds: int
    branched: int                   # rounds in which some model's proposal branched
    margin: float | None            # closest call: min over rounds with 2+ candidates that reached
    margin_round: int | None        # the output, runner-up minus winner fused score; that round


@dataclass
class Run:
    name: str
    cases: list[Case]
    methods: dict[str, MethodInfo]          # adafuse methods first, then fixed, then single models
    warnings: list[str] = field(default_factory=list)
    _infos: dict[str, list[TraceInfo | None]] = field(default_factory=dict, repr=False)

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.cases))

    def singles(self) -> list[str]:
        return [s for s, m in self.methods.items() if m.mode == "greedy"]

    def default_focus(self) -> str | None:
        """The method whose trace is inspected: plain 'adafuse' if present, else the first
        ensemble method, else the first method."""
        ensembles = [s for s, m in self.methods.items() if m.mode != "greedy"]
        for s in ensembles:
            if self.methods[s].label == "adafuse":
                return s
        return (ensembles or list(self.methods) or [None])[0]

    def method(self, name: str | None) -> str | None:
        """A slug from a slug or label (None: the default focus)."""
        if not name:
            return self.default_focus()
        if name in self.methods:
            return name
        for s, m in self.methods.items():
            if m.label == name:
                return s
        raise CasesError(f"no method {name!r} in {self.name}; it has "
                         + ", ".join(m.label for m in self.methods.values()))

    def trace_info(self, slug: str) -> list[TraceInfo | None]:
        """Per case, the summary of `slug`'s trace; read once per method, then cached."""
        if slug not in self._infos:
            infos: list[TraceInfo | None] = [None] * len(self.cases)
            wanted = [(c.results[slug].where, c.index) for c in self.cases
                      if slug in c.results and c.results[slug].where is not None]
            for where, index, raw in read_lines(wanted):
                try:
                    obj = json.loads(raw)
                    if obj.get("key", self.cases[index].key) == self.cases[index].key:
                        infos[index] = summarize_trace(_trace_dict(obj))
                except (ValueError, TypeError, KeyError, AttributeError):
                    pass                      # changed since it was opened: the viewer says so on selection
            self._infos[slug] = infos
        return self._infos[slug]


# ---------------------------------------------------------------- opening

def open_cases(paths, name: str | None = None) -> Run:
    """A Run from run folders, folders of runs, per-item JSONL files and trace JSON files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise CasesError("nothing to open: give a run folder, a per-item JSONL or a trace JSON")
    b = _Builder()
    for p in paths:
        b.add_path(p)
    return b.finish(name or ", ".join(str(p) for p in paths))


def load_trace(case: Case, slug: str) -> Trace | None:
    """The full trace of one method on one case, read from its line on disk."""
    result = case.results.get(slug)
    if result is None or result.where is None:
        return None
    (_, _, raw), = read_lines([(result.where, 0)])
    name = Path(result.where.path).name
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict) or ("key" in obj and (obj.get("key"), _slug(obj)) != (case.key, slug)):
        raise CasesError(f"{name} changed since it was opened (byte {result.where.offset} no longer holds "
                         f"{case.name} / {slug}); open it again")
    try:
        return Trace.from_dict(_trace_dict(obj))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CasesError(f"{name}: the trace of {case.name} / {slug} is incomplete ({type(e).__name__}: {e})") from None


def summarize_trace(d: dict) -> TraceInfo:
    rounds = d.get("rounds") or []
    branched = sum(1 for r in rounds if any(p.get("branched") for p in r.get("proposals", [])))
    margin, at = None, None
    for r in committed_rounds(rounds, d.get("text", "")):
        scores = sorted(float(c["score"]) for c in r.get("candidates", [])
                        if isinstance(c.get("score"), (int, float)) and not math.isnan(c["score"]))
        if len(scores) >= 2 and (margin is None or scores[1] - scores[0] < margin):
            margin, at = scores[1] - scores[0], int(r.get("index", 0))
    return TraceInfo(len(rounds), branched, margin, at)


def committed_rounds(rounds: list, text: str) -> list:
    """The rounds whose span reached the output: not the ones a stop string cut away entirely
    (as Trace.spans() counts them). Works on Round objects and on trace dicts."""
    out, used = [], 0
    for r in rounds:
        if used >= len(text):
            break
        chosen = r.chosen if hasattr(r, "chosen") else r["chosen"]
        used += len(chosen[: len(text) - used])
        out.append(r)
    return out


def _trace_dict(obj: dict) -> dict:
    """A record's trace, or the object itself when it is a trace."""
    trace = obj["trace"] if "key" in obj else obj
    if not isinstance(trace, dict):
        raise ValueError("no trace")
    return trace


def read_lines(wanted):
    """(where, tag) -> (where, tag, bytes); one open file at a time, reads in file order."""
    by_path: dict[str, list] = {}
    for where, tag in wanted:
        by_path.setdefault(where.path, []).append((where, tag))
    for path, items in by_path.items():
        try:
            with open(path, "rb") as f:
                for where, tag in sorted(items, key=lambda x: x[0].offset):
                    f.seek(where.offset)
                    yield where, tag, f.read(where.length)
        except OSError as e:
            raise CasesError(f"cannot read {path}: {e.strerror or e}; open it again") from None


class _Builder:
    def __init__(self):
        self.cases: dict[tuple[str, str], Case] = {}
        self.methods: dict[str, MethodInfo] = {}
        self.warnings: list[str] = []
        self.skipped = 0
        self.duplicates = 0
        self.notes: dict[tuple[str, str], str] = {}
        self.seen: set[Path] = set()

    def warn(self, message: str) -> None:
        self.skipped += 1
        if len(self.warnings) < SHOWN_WARNINGS:
            self.warnings.append(message)

    # ---- paths
    def add_path(self, path: Path) -> None:
        if not path.exists():
            raise CasesError(f"{path}: no such file or folder")
        if path.is_dir():
            self.add_dir(path)
        elif path.name == "run.json" or path.name.endswith("summary.json"):
            self.add_dir(path.parent)        # the run's own files: open the run they describe
        else:
            self.add_file(path)

    def add_dir(self, path: Path) -> None:
        files = sorted(path.glob("*/*.jsonl"))
        if files:
            for f in files:
                self.add_records(f)
            self._read_notes(path)
            return
        runs = [d for d in sorted(path.iterdir()) if d.is_dir() and any(d.glob("*/*.jsonl"))]
        if not runs:
            raise CasesError(f"{path} holds no evaluation results: expected <task>/<method>.jsonl files "
                             "(the --out folder of python -m adafuse eval), or folders of such runs")
        for d in runs:
            self.add_dir(d)

    def add_file(self, path: Path) -> None:
        with open(path, "rb") as f:
            if b"\0" in f.read(4096):
                raise CasesError(f"{path.name} is not a text file; expected per-item JSONL or a trace JSON")
            f.seek(0)
            first = f.readline()
            while first and not first.strip():
                first = f.readline()
        if not first:
            raise CasesError(f"{path.name} is empty")
        try:
            obj = json.loads(first)
        except (ValueError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict) and "key" in obj:
            self.add_records(path)
            return
        if isinstance(obj, dict) and "question" in obj and "answer" in obj and "prediction" not in obj:
            raise CasesError(f"{path.name} holds task items (question/answer), not results: run "
                             "python -m adafuse eval on it, then open its --out folder")
        if obj is not None and not (isinstance(obj, dict) and ("rounds" in obj or "invocations" in obj)):
            raise CasesError(_foreign(path.name, obj, "line 1"))
        self.add_json(path)

    def add_json(self, path: Path) -> None:
        """A whole-file JSON: an exported trace, one record, or a run's run.json / summary.json."""
        size = path.stat().st_size
        if size > WHOLE_JSON_LIMIT:
            raise CasesError(f"{path.name} is {size >> 20} MB and is not JSONL; expected per-item JSONL or a trace")
        try:
            obj = json.loads(path.read_bytes())
        except UnicodeDecodeError:
            raise CasesError(f"{path.name} is not UTF-8 text; expected per-item JSONL or a trace JSON") from None
        except ValueError as e:
            raise CasesError(f"{path.name} is neither JSON nor JSONL ({getattr(e, 'msg', e)} at line "
                             f"{getattr(e, 'lineno', '?')}, column {getattr(e, 'colno', '?')})") from None
        if isinstance(obj, dict) and ("invocations" in obj or {"tasks", "methods"} <= obj.keys()):
            self.add_dir(path.parent)
        elif isinstance(obj, dict) and "key" in obj:
            self._add_record(obj, Where(str(path), 0, size), path.name, isinstance(obj.get("trace"), dict))
        elif isinstance(obj, dict) and _is_trace(obj):
            self._add_trace(obj, path, size)
        else:
            raise CasesError(_foreign(path.name, obj, "it"))

    # ---- records
    def add_records(self, path: Path) -> None:
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        before = self.skipped
        offset, n, name = 0, 0, str(path)      # one path string shared by the file's results
        with open(path, "rb") as f:
            for raw in f:
                n += 1
                length = len(raw)
                complete = raw.endswith(b"\n")
                if raw.strip():
                    # a line without its newline may be one being written: take it only if whole
                    head = _head(raw) if complete or _is_json(raw) else None
                    problem = _problem(head)
                    if problem is None:
                        self._add_record(head, Where(name, offset, length), f"{path.name}:{n}",
                                         head.pop("_has_trace"))
                    elif complete:               # a cut last line is a run still writing (or killed)
                        self.warn(f"{path.name}:{n}: {problem}; skipped")
                offset += length
        if n and self.skipped - before == n:
            raise CasesError(f"{path.name}: no line is an evaluation result ({self.warnings[-1]}); expected "
                             "the per-item JSONL that python -m adafuse eval writes")

    def _add_record(self, rec: dict, where: Where, origin: str, has_trace: bool) -> None:
        problem = _problem(rec)
        if problem:
            raise CasesError(f"{origin}: {problem}")
        fp = rec.get("fingerprint") if isinstance(rec.get("fingerprint"), dict) else {}
        slug = _slug(rec)
        if slug not in self.methods:
            mode = fp.get("mode") or slug.split("_", 1)[0]
            self.methods[slug] = MethodInfo(slug, str(rec.get("method") or slug), str(mode),
                                            tuple(fp.get("models") or ()))
        ident = (rec["task"], rec["key"])
        case = self.cases.get(ident)
        if case is None:
            refs = rec.get("reference")
            refs = [str(r) for r in refs] if isinstance(refs, list) else ([] if refs is None else [str(refs)])
            case = Case(0, rec["task"], rec["key"], int(rec.get("line") or 0), str(rec.get("question", "")), refs,
                        _outcome_metric(fp.get("metric"), rec["metrics"]))
            self.cases[ident] = case
        if slug in case.results:
            self.duplicates += 1             # the same item twice (rank files beside a merged file)
            return
        words = rec.get("words_per_round")
        case.results[slug] = Result(slug, rec["prediction"], str(rec.get("answer", rec["prediction"])),
                                    {k: float(v) for k, v in rec["metrics"].items() if _is_number(v)},
                                    rec.get("error"), float(rec.get("seconds") or 0.0),
                                    len(words) if isinstance(words, list) else 0,
                                    where if has_trace else None)

    def _add_trace(self, d: dict, path: Path, size: int) -> None:
        try:
            trace = Trace.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CasesError(f"{path.name} looks like a trace but is incomplete ({type(e).__name__}: {e})") from None
        slug = f"trace_{trace.mode}"
        self.methods.setdefault(slug, MethodInfo(slug, f"{trace.mode} (trace)", trace.mode, tuple(trace.models)))
        lines = [x.strip() for x in trace.prompt.splitlines() if x.strip()]
        case = Case(0, TRACE_TASK, path.name, 1, " ".join(lines[-2:]), [], "")    # the prompt's end: the question
        case.results[slug] = Result(slug, trace.text, trace.text.strip(), {}, None, trace.stats.seconds,
                                    len(trace.rounds), Where(str(path), 0, size))
        self.cases[(TRACE_TASK, f"{path.resolve()}")] = case

    def _read_notes(self, folder: Path) -> None:
        path = folder / NOTES_FILE
        if not path.is_file():
            return
        try:
            for n in json.loads(path.read_text(encoding="utf-8")).get("cases", []):
                self.notes[(n["task"], n["key"])] = str(n.get("note", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.warnings.append(f"{path}: unreadable notes, ignored")

    def finish(self, name: str) -> Run:
        tasks = list(dict.fromkeys(t for t, _ in self.cases))
        ordered = sorted(self.cases.values(), key=lambda c: (tasks.index(c.task), c.line, c.key))
        if self.notes:        # a curated folder lists its cases in the order it wants them read
            rank = {k: i for i, k in enumerate(self.notes)}
            ordered.sort(key=lambda c: rank.get((c.task, c.key), len(rank)))
        for i, c in enumerate(ordered):
            c.index = i
            c.note = self.notes.get((c.task, c.key), "")
        # adafuse, fixed, then each model alone in the ensemble's model order
        order = list(self.methods)
        models = list(dict.fromkeys(x for m in self.methods.values() if m.mode != "greedy" for x in m.models))
        rank = lambda s: (MODE_ORDER.get(self.methods[s].mode, 3),  # noqa: E731
                          models.index(self.methods[s].models[0]) if self.methods[s].mode == "greedy"
                          and self.methods[s].models and self.methods[s].models[0] in models else len(models),
                          order.index(s))
        methods = {s: self.methods[s] for s in sorted(order, key=rank)}
        warnings = list(self.warnings)
        if self.skipped > len([w for w in warnings if w.endswith("skipped")]):
            warnings.append(f"{self.skipped} unreadable lines skipped in all")
        if self.duplicates:
            warnings.append(f"{self.duplicates} duplicate results ignored (the first one is kept)")
        return Run(name, ordered, methods, warnings)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _head(raw: bytes) -> dict | None:
    """The fields before the trace, parsed without the trace; the whole line if it has no trace key."""
    cut = raw.find(TRACE_KEY)
    try:
        if cut >= 0 and raw.rstrip().endswith(b"}"):
            head = json.loads(raw[:cut] + b"}")
            if isinstance(head, dict):
                head["_has_trace"] = not raw[cut + len(TRACE_KEY):].lstrip().startswith(b"null")
                if _problem(head) is None:
                    return head
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(rec, dict):
        rec["_has_trace"] = isinstance(rec.pop("trace", None), dict)
    return rec


def _problem(rec) -> str | None:
    if rec is None:
        return "not valid JSON"
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k, t in REQUIRED.items() if not isinstance(rec.get(k), t)]
    if not isinstance(rec.get("slug") or rec.get("method"), str):
        missing.append("method")
    if missing:
        return "not an evaluation result (no " + ", ".join(missing) + ")"
    return None


def _slug(rec: dict) -> str:
    return rec.get("slug") or re.sub(r"[^A-Za-z0-9._-]+", "-", str(rec.get("method")))


def _outcome_metric(task_metric, metrics: dict) -> str:
    if task_metric in OUTCOME_METRIC and OUTCOME_METRIC[task_metric] in metrics:
        return OUTCOME_METRIC[task_metric]
    for name in ("em", "accuracy", "chrf", "f1", "bleu"):
        if name in metrics:
            return name
    return next(iter(metrics), "")


def _is_trace(d: dict) -> bool:
    return {"rounds", "mode", "models", "text"} <= d.keys()


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _foreign(name: str, obj, what: str) -> str:
    keys = f"keys {', '.join(list(obj)[:6])}" if isinstance(obj, dict) else f"a JSON {type(obj).__name__}"
    return (f"{name}: {what} is JSON ({keys}) but neither an evaluation result nor a trace; expected the "
            "per-item JSONL of python -m adafuse eval, a run folder, or a trace exported by the app or --json")
