"""Run methods over task items and keep every finished item on disk.

Layout under the output dir: `<task>/<method slug>.jsonl`, one JSON object a line per finished
item (prediction, reference, metrics, the full trace). Each line is flushed and fsynced as soon as
the item is done, so a killed run loses at most the item in flight; `resume=True` skips items
already on disk. Under `accelerate launch` every process takes every world-th item, writes
`<slug>.rank<R>.jsonl`, and the main process merges those files, in item order, into
`<slug>.jsonl` once all processes are done. With `batch_items` > 1, that many items decode at
once in threads whose forwards are batched (adafuse/batch.py); records are written as items finish
and the files are put back in item order at the end.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from ..batch import run_batched
from ..config import DecodeConfig
from ..errors import InputError
from ..trace import Trace
from .tasks import EvalDataError, Item, Task

# generate(model names, prompt, config) -> Trace. The CLI binds it to adafuse.generate and the
# loaded models; tests pass a fake.
GenerateFn = Callable[[tuple[str, ...], str, DecodeConfig], Trace]

SWEEP_KEYS = {"tau": "tau", "max_words": "max_words", "m": "max_words", "branches": "branches", "b": "branches",
              "end_marker": "end_marker"}


@dataclass(frozen=True)
class Method:
    """One decoding method with all its settings: a column of the results table."""
    label: str                     # shown in tables: "adafuse", "adafuse B=3", "fixed:2", "greedy:gemma3-270m"
    mode: str                      # adafuse | fixed | greedy | unite | gac
    models: tuple[str, ...]
    tau: float = 0.7
    max_words: int = 3
    branches: int = 1
    fixed_words: int = 1
    end_marker: str = DecodeConfig.end_marker   # how a span reaching a stop string is scored
    top_k: int = DecodeConfig.top_k                # unite: each model's top-k tokens in the union

    @property
    def slug(self) -> str:
        """File name: says every setting, so a resumed run never mixes settings."""
        end = "" if self.end_marker == DecodeConfig.end_marker else f"_end{self.end_marker}"
        if self.mode == "adafuse":
            return _safe(f"adafuse_tau{self.tau:g}_M{self.max_words}_B{self.branches}{end}")
        if self.mode == "fixed":
            return _safe(f"fixed_L{self.fixed_words}{end}")
        if self.mode == "unite":
            return _safe(f"unite_k{self.top_k}")
        if self.mode == "gac":
            return "gac"
        return _safe(f"greedy_{self.models[0]}")

    def params(self) -> dict:
        params = {"mode": self.mode, "models": list(self.models), "tau": self.tau, "max_words": self.max_words,
                  "branches": self.branches, "fixed_words": self.fixed_words}
        if self.mode == "unite":
            params["top_k"] = self.top_k
        if self.mode != "greedy":
            # Results of the round loop before stop-aware candidates (no such key) are not resumed
            # with these: the candidates, and so the outputs, changed. A lone model's greedy output
            # did not: its single candidate wins whatever it is scored on.
            params["end_marker"] = self.end_marker
        return params

    def config(self, task: Task, prompt_format: str = "raw") -> DecodeConfig:
        return DecodeConfig(mode=self.mode, tau=self.tau, max_words=self.max_words, branches=self.branches,
                            fixed_words=self.fixed_words, max_new_tokens=task.spec.max_new_tokens,
                            prompt_format=prompt_format, stop=task.spec.stop,
                            end_marker=self.end_marker, top_k=self.top_k).validated()


def parse_methods(specs: Iterable[str], models: list[str], *, tau: float = 0.7, max_words: int = 3,
                  branches: int = 1, sweeps: Iterable[str] = ()) -> list[Method]:
    """`adafuse`, `fixed:L`, `greedy:MODEL` (`greedy` or `greedy:all`: one per model).
    `sweeps` ("branches=1,2,3", "tau=0.5,0.7") multiply the adafuse method over those values."""
    models = list(models)
    grid = parse_sweeps(sweeps)
    base = Method("adafuse", "adafuse", tuple(models), float(tau), int(max_words), int(branches))
    out: list[Method] = []
    for spec in specs:
        spec = spec.strip()
        name, _, arg = spec.partition(":")
        if name == "adafuse" and not arg:
            if len(models) < 2:
                raise InputError("adafuse needs at least two models (--models a,b)")
            if not grid:
                out.append(base)
            for values in itertools.product(*grid.values()):
                changes = dict(zip(grid, values))
                label = "adafuse " + " ".join(f"{_SHORT[k]}={v:g}" if isinstance(v, (int, float)) else f"{_SHORT[k]}={v}"
                                              for k, v in changes.items())
                out.append(replace(base, label=label, **changes))
        elif name == "fixed":
            try:
                words = int(arg)
            except ValueError:
                raise InputError(f"method {spec!r}: write fixed:L with L words per round, e.g. fixed:2") from None
            if len(models) < 2:
                raise InputError("fixed:L needs at least two models (--models a,b)")
            out.append(Method(f"fixed:{words}", "fixed", tuple(models), float(tau), int(max_words), 1, words))
        elif name == "unite":
            try:
                k = int(arg) if arg else DecodeConfig.top_k
            except ValueError:
                raise InputError(f"method {spec!r}: write unite or unite:K with K top tokens per model, e.g. unite:10") from None
            if len(models) < 2:
                raise InputError("unite needs at least two models (--models a,b)")
            out.append(Method("unite" if not arg else f"unite:{k}", "unite", tuple(models), top_k=k))
        elif name == "gac" and not arg:
            if len(models) < 2:
                raise InputError("gac needs at least two models (--models a,b)")
            out.append(Method("gac", "gac", tuple(models)))
        elif name == "greedy":
            chosen = models if arg in ("", "all") else [arg]
            for m in chosen:
                if m not in models:
                    raise InputError(f"method {spec!r}: {m!r} is not among --models ({', '.join(models)})")
                out.append(Method(f"greedy:{m}", "greedy", (m,)))
        else:
            raise InputError(f"unknown method {spec!r}; use adafuse, fixed:L, unite[:K], gac or greedy:MODEL")
    unique = []
    for m in out:                   # "greedy:b,greedy" names b twice: keep it once
        if m.slug not in {u.slug for u in unique}:
            DecodeConfig(mode=m.mode, tau=m.tau, max_words=m.max_words, branches=m.branches,
                         fixed_words=m.fixed_words, top_k=m.top_k).validated().check_tau_range()
            unique.append(m)
    return unique


_SHORT = {"tau": "tau", "max_words": "M", "branches": "B", "end_marker": "end"}


def parse_sweeps(sweeps: Iterable[str]) -> dict[str, list]:
    """["branches=1,2,3"] -> {"branches": [1, 2, 3]}; checked against DecodeConfig's limits."""
    grid: dict[str, list] = {}
    for sweep in sweeps:
        key, eq, values = sweep.partition("=")
        field_name = SWEEP_KEYS.get(key.strip().lower())
        if not eq or field_name is None:
            raise InputError(f"bad --sweep {sweep!r}; write e.g. branches=1,2,3 or tau=0.5,0.7,0.9 "
                             f"(keys: tau, max_words/M, branches/B, end_marker)")
        parsed = []
        for v in values.split(","):
            if field_name == "end_marker":
                parsed.append(v.strip())
                DecodeConfig(end_marker=parsed[-1]).validated()
                continue
            try:
                parsed.append(float(v) if field_name == "tau" else int(v))
            except ValueError:
                raise InputError(f"--sweep {key}: {v!r} is not a {'number' if field_name == 'tau' else 'whole number'}") from None
            DecodeConfig(**{field_name: parsed[-1]}).validated().check_tau_range()
        if field_name in grid:
            raise InputError(f"--sweep {key} given twice")
        grid[field_name] = parsed
    return grid


# ---------------------------------------------------------------- results on disk

def method_file(out_dir: Path, task: str, method: Method, rank: int | None = None) -> Path:
    suffix = "" if rank is None else f".rank{rank}"
    return Path(out_dir) / _safe(task) / f"{method.slug}{suffix}.jsonl"


def read_records(paths: Iterable[Path], warn: Callable[[str], None] | None = None) -> list[dict]:
    """Finished-item records from result files. A line that is not a whole JSON object (the last
    line of a killed run) is ignored."""
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict) or "key" not in rec:
                if warn and n < len(lines):      # a cut-off last line is expected after a kill
                    warn(f"{path}:{n}: unreadable result line ignored (it will be redone)")
                continue
            out.append(rec)
    return out


def records_by_method(folder: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """(task folder, method slug) -> key -> record, from every result file under `folder` (a run's
    --out, or one task's folder; rank pieces too), the first record of a key kept."""
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for path in sorted(Path(folder).rglob("*.jsonl")):
        for rec in read_records([path]):       # skips lines cut by a kill
            if "slug" in rec:
                out.setdefault((path.parent.name, rec["slug"]), {}).setdefault(rec["key"], rec)
    return out


def existing_files(out_dir: Path, task: str, method: Method) -> list[Path]:
    base = method_file(out_dir, task, method)
    ranks = sorted(glob.glob(glob.escape(str(base)[: -len(".jsonl")]) + ".rank*.jsonl"))
    return ([base] if base.exists() else []) + [Path(p) for p in ranks]


def fingerprint(task: Task, method: Method, prompt_format: str) -> dict:
    return {**task.fingerprint(), **method.params(), "prompt_format": prompt_format}


def load_done(out_dir: Path, task: Task, method: Method, prompt_format: str,
              warn: Callable[[str], None] | None = None) -> dict[str, dict]:
    """key -> record of the items of (task, method) already on disk. Refuses results that were made
    with other settings: resuming must not mix them."""
    want = fingerprint(task, method, prompt_format)
    done = {}
    for rec in read_records(existing_files(out_dir, task.name, method), warn):
        have = rec.get("fingerprint", {})
        if have != want:
            diff = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in sorted(set(have) | set(want))
                             if have.get(k) != want.get(k))
            raise EvalDataError(f"{method_file(out_dir, task.name, method)}: results on disk were made with "
                                f"other settings ({diff}); use another --out, or the same settings to resume")
        done.setdefault(rec["key"], rec)
    return done


class ResultWriter:
    """Appends one line per finished item and makes it durable before returning."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(path)
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _drop_partial_line(path: Path) -> None:
    """Cut a half-written last line (a kill mid-write) so the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def collect(out_dir: Path, task: str, method: Method) -> list[dict]:
    """All finished records of (task, method): one per key, in item order (line, then key)."""
    by_key: dict[str, dict] = {}
    for rec in read_records(existing_files(out_dir, task, method)):
        by_key.setdefault(rec["key"], rec)
    return sorted(by_key.values(), key=lambda r: (int(r.get("line", 0)), r["key"]))


def merge(out_dir: Path, task: Task, method: Method) -> list[dict]:
    """Fold the rank files of (task, method) into `<slug>.jsonl`, deduplicated and in item order,
    whatever the number of processes."""
    files = existing_files(out_dir, task.name, method)
    if not files:
        return []
    records = collect(out_dir, task.name, method)
    target = method_file(out_dir, task.name, method)
    write_records(target, records)
    for p in files:
        if p != target:
            p.unlink()
    return records


def write_records(target: Path, records: list[dict]) -> None:
    """Replace `target` by these records, one a line: a temporary file renamed over it, so a kill
    leaves the old file or the new one, never half of one."""
    tmp = target.with_suffix(".jsonl.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


# ---------------------------------------------------------------- the run

@dataclass
class RunOptions:
    out_dir: Path
    resume: bool = False
    prompt_format: str = "raw"
    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    progress: bool = True
    batch_items: int = 1          # items decoded at once, their forwards batched (adafuse/batch.py)
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))


def run(tasks: list[Task], methods: list[Method], generate: GenerateFn, opts: RunOptions) -> dict:
    """Decode every (task, item, method) not yet on disk; item-major, so an interrupted run has all
    methods on the same items. Returns {task: {method slug: records}} after the merge, on every
    process."""
    out_dir = Path(opts.out_dir)
    main = opts.rank == 0
    done: dict[tuple[str, str], dict[str, dict]] = {}
    for task in tasks:
        for method in methods:
            found = load_done(out_dir, task, method, opts.prompt_format, opts.log if main else None)
            if found and not opts.resume:
                raise EvalDataError(f"{out_dir} already holds results for {task.name} / {method.label}; "
                                    f"pass --resume to continue that run, or choose another --out")
            done[(task.name, method.slug)] = found
    # Every process must have read what is on disk before any of them writes.
    opts.barrier()

    work = []
    for task in tasks:
        pending = [(item, [m for m in methods if item.key not in done[(task.name, m.slug)]]) for item in task.items]
        pending = [(item, ms) for item, ms in pending if ms]
        for i, (item, ms) in enumerate(pending):
            if i % opts.world == opts.rank:
                work.extend((task, item, m) for m in ms)
    skipped = sum(len(d) for d in done.values())
    if main and skipped:
        opts.log(f"resuming: {skipped} finished item results on disk are kept and skipped")

    writers: dict[tuple[str, str], ResultWriter] = {}
    bar = _progress(len(work), opts.progress and main, opts.world)
    lock = threading.Lock()     # batched runs write from several threads

    def do(task: Task, item: Item, method: Method) -> None:
        record = evaluate_item(task, item, method, generate, opts.prompt_format)
        with lock:
            wkey = (task.name, method.slug)
            if wkey not in writers:
                writers[wkey] = ResultWriter(method_file(out_dir, task.name, method,
                                                         None if opts.world == 1 else opts.rank))
            writers[wkey].write(record)
            if bar is not None:
                bar.set_postfix_str(f"{task.name} {method.label}", refresh=False)
                bar.update(1)

    try:
        if opts.batch_items > 1:
            # One job per item (its methods in order, so a thread's prompt cache keeps the item's
            # prefill for its next method); `batch_items` items decode at once, forwards batched.
            jobs = [list(g) for _, g in itertools.groupby(work, key=lambda w: (w[0].name, w[1].key))]
            run_batched(((lambda units=units: [do(*u) for u in units]) for units in jobs), opts.batch_items)
        else:
            for task, item, method in work:
                do(task, item, method)
    finally:
        for w in writers.values():
            w.close()
        if bar is not None:
            bar.close()

    opts.barrier()
    if main:        # only the main process touches the merged files; the others wait, then read them
        for task in tasks:
            for method in methods:
                merge(out_dir, task, method)
    opts.barrier()
    return {task.name: {m.slug: collect(out_dir, task.name, m) for m in methods} for task in tasks}


def evaluate_item(task: Task, item: Item, method: Method, generate: GenerateFn, prompt_format: str) -> dict:
    """Decode one item with one method and score it. An item the engine refuses (say, a prompt
    longer than a model's context) is kept with its error and scored as an empty answer."""
    prompt = task.prompt(item)
    started = time.perf_counter()
    error = None
    try:
        trace = generate(method.models, prompt, method.config(task, prompt_format))
    except InputError as e:
        trace, error = None, str(e)
    seconds = time.perf_counter() - started
    text = trace.text if trace is not None else ""
    record = {
        "key": item.key, "line": item.line, "task": task.name, "method": method.label, "slug": method.slug,
        "question": item.question, "reference": list(item.references),
        "prediction": text, "answer": task.answer(text), "metrics": task.score(text, item),
        "seconds": round(seconds, 4),
        "forward_passes": sum(trace.stats.forward_passes.values()) if trace is not None else 0,
        "words_per_round": trace.words_per_round() if trace is not None else [],
        "error": error,
        "fingerprint": fingerprint(task, method, prompt_format),
        "trace": trace.to_dict() if trace is not None else None,
    }
    return record


def _progress(total: int, enabled: bool, world: int):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    desc = "eval" if world == 1 else f"eval (process 0 of {world})"
    return tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, smoothing=0.1, file=sys.stderr)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)

