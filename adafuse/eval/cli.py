"""`python -m adafuse eval`: run benchmark tasks with several methods and write the reports.

    python -m adafuse eval --task nq,gsm8k --limit 30 --out runs/demo \\
        --methods adafuse,fixed:1,fixed:2,fixed:3,greedy --sweep branches=1,2,3
    python -m adafuse eval report --out runs/demo      # rebuild the reports from the item files
    python -m adafuse eval merge --out runs/demo --from copied/demo --computed-on "..."   # results made elsewhere
    accelerate launch -m adafuse eval ...               # shard items over processes / GPUs
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

from ..config import add_execution_arguments, execution_from_arguments, unescape_stop
from ..errors import AdafuseError, InputError
from . import memory, merge, report, runner, tasks as tasks_mod

DEFAULT_METHODS = "adafuse,greedy"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adafuse eval",
        description="Evaluate AdaFuse, fixed-length rounds and single-model greedy decoding on benchmark "
                    "tasks. Every finished item is saved at once; --resume continues an interrupted run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="methods: adafuse | fixed:L | unite | unite:K | gac | greedy:MODEL | greedy (every model)\n"
               "tasks: " + ", ".join(tasks_mod.TASK_NAMES) + ", all, custom (with --data and --metric)\n"
               "rebuild reports of a finished or interrupted run: python -m adafuse eval report --out DIR\n"
               "bring in results computed on another machine: python -m adafuse eval merge --help")
    p.add_argument("--task", "--tasks", dest="task", required=True,
                   help="comma-separated task names, 'all', or 'custom'")
    p.add_argument("--out", required=True, help="output directory (per-item JSONL, summary.json, report.md/html)")
    p.add_argument("--data-dir", help="benchmark directory (default: $ADAFUSE_BENCH_DIR or ../shared/bench "
                                      "beside the repository)")
    p.add_argument("--data", help="custom task: JSONL file with question/answer per line")
    p.add_argument("--metric", choices=tasks_mod.METRICS, help="custom task: how answers are scored")
    p.add_argument("--prompt-file", help="custom task: few-shot prompt text put in {prompt}")
    p.add_argument("--template", help="custom task: prompt template with {prompt} and {question} "
                                      "(default: the QA, GSM8K or translation shape that fits --metric)")
    p.add_argument("--models", help="comma-separated model presets or paths (default: the embedded pair)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods (default {DEFAULT_METHODS})")
    p.add_argument("--tau", type=float, default=0.7, help="adafuse: margin threshold (default 0.7)")
    p.add_argument("--max-words", type=int, default=3, help="adafuse: M, most words per span (default 3)")
    p.add_argument("--branches", type=int, default=1, help="adafuse: B, branches at an uncertain word (default 1)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="run adafuse once per value (keys tau, max_words/M, branches/B); repeatable (grid)")
    p.add_argument("--limit", type=int, help="first N items of each task")
    p.add_argument("--max-new-tokens", type=int, help="override every task's token budget")
    p.add_argument("--stop", action="append", help="override the task stop strings (repeatable; \\n allowed)")
    p.add_argument("--prompt-format", choices=("raw", "chat"), default="raw")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N. Under accelerate launch, auto gives process i GPU "
                        "i mod count, so more processes than GPUs share them; a named device is used by all")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    add_execution_arguments(p)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's). On a shared or busy "
                                                "CPU, 1 can be many times faster than oversubscribed threads")
    p.add_argument("--spm-model", help="SentencePiece model file for spBLEU (default: sacrebleu's cache if present; "
                                       "never downloaded)")
    p.add_argument("--no-prompt-cache", action="store_true",
                   help="prefill every prompt from scratch (default: reuse the KV of the shared few-shot "
                        "prefix, and of the same item under the previous method)")
    p.add_argument("--batch-items", type=int, default=1, metavar="N",
                   help="decode N items at once, their forwards on each model batched into one (default 1). "
                        "Results equal unbatched decoding up to float rounding; docs/EVAL.md has the speed-ups. "
                        "Each item in flight holds its own KV caches: a run that may not fit in memory "
                        "says so before it starts, with an N that does")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished items")
    p.add_argument("--show-prompt", action="store_true", help="print each task's first prompt and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report-name", default="report",
                   help="name of this invocation's reports: NAME.md, NAME.html and NAME.summary.json "
                        "(default: report.md, report.html, summary.json); lets runs that share --out, "
                        "e.g. a sweep resumed into the main run's dir, keep their own reports")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            return _report_only(argv[1:])
        if argv[:1] == ["merge"]:
            return _merge(argv[1:])
        return _run(build_parser().parse_args(argv), argv)
    except AdafuseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are saved; rerun with --resume to continue", file=sys.stderr)
        return 130


def load_tasks(args) -> list[tasks_mod.Task]:
    names = [n.strip() for n in args.task.split(",") if n.strip()]
    if names == ["all"]:
        names = list(tasks_mod.TASK_NAMES)
    stop = tuple(unescape_stop(s) for s in args.stop) if args.stop else None
    out = []
    for name in names:
        if name == "custom":
            if not args.data or not args.metric:
                raise tasks_mod.EvalDataError("--task custom needs --data FILE and --metric em|f1|number|bleu")
            task = tasks_mod.load_custom(args.data, args.metric, prompt_file=args.prompt_file,
                                         template=args.template, max_new_tokens=args.max_new_tokens, stop=stop)
        else:
            task = tasks_mod.load_task(name, args.data_dir, max_new_tokens=args.max_new_tokens, stop=stop)
        if args.limit is not None:
            if args.limit < 1:
                raise tasks_mod.EvalDataError("--limit must be at least 1")
            task.items = task.items[: args.limit]
        out.append(task)
    return out


def model_names(args) -> list[str]:
    if args.models:
        return [m.strip() for m in args.models.split(",") if m.strip()]
    import adafuse

    return list(adafuse.DEFAULT_PAIR)


def _run(args, argv: list[str]) -> int:
    started = time.time()
    if args.batch_items < 1:
        raise InputError(f"--batch-items must be at least 1, got {args.batch_items}")
    tasks = load_tasks(args)
    for task in tasks:
        for problem in task.problems:
            print(f"warning: {problem}", file=sys.stderr)
    names = model_names(args)
    methods = runner.parse_methods(args.methods.split(","), names, tau=args.tau, max_words=args.max_words,
                                   branches=args.branches, sweeps=args.sweep)
    if args.show_prompt:
        for task in tasks:
            print(f"=== {task.name}: stop {list(task.spec.stop)}, max_new_tokens {task.spec.max_new_tokens}\n"
                  f"{task.prompt(task.items[0])}")
        return 0

    rank, world, barrier, device, sharing = 0, 1, (lambda: None), args.device, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        # The processes only wait for each other, never exchange tensors: gloo does that, on any
        # machine, and unlike NCCL it lets several processes share one GPU.
        state = PartialState(cpu=True)
        # Not state.wait_for_everyone: it passes device_ids=[local rank], which names a GPU that
        # does not exist when processes outnumber GPUs. A plain gloo barrier runs on the CPU.
        rank, world, barrier = state.process_index, state.num_processes, torch.distributed.barrier
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = process_device(args.device, state.local_process_index, gpus)
        sharing = processes_on(device, args.device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")), gpus)
    out_dir = Path(args.out)
    if rank == 0:
        _check_out_dir(out_dir, args.resume)
        _write_run_json(out_dir, argv, names, tasks, methods, world)

    generate, lms = _engine(sorted({m for method in methods for m in method.models}, key=names.index), args, device)
    if rank == 0 and (warning := memory.batch_warning(lms, tasks, methods, args.batch_items, sharing)):
        print(f"warning: {warning}", file=sys.stderr)
    opts = runner.RunOptions(out_dir=out_dir, resume=args.resume, prompt_format=args.prompt_format,
                             rank=rank, world=world, barrier=barrier, progress=not args.no_progress,
                             batch_items=args.batch_items)
    results = runner.run(tasks, methods, generate, opts)
    if rank == 0:
        summary = report.summarize(tasks, methods, results, spm_model=args.spm_model,
                                   extra=_run_info(argv, names, world, time.time() - started))
        paths = report.write_reports(out_dir, summary, args.report_name)
        print(report.markdown(summary))
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def process_device(requested: str, local_rank: int, gpus: int) -> str:
    """The device of one process of a sharded run: a named device as given; with auto, GPU
    local_rank mod gpus (small models are launch-bound, so several processes per GPU go faster
    than one), or the CPU where there is none."""
    if requested != "auto":
        return requested
    return f"cuda:{local_rank % gpus}" if gpus else "cpu"


def processes_on(device: str, requested: str, local_processes: int, gpus: int) -> int:
    """How many of this machine's processes decode on `device`, by process_device's mapping: they
    share its memory."""
    return sum(process_device(requested, i, gpus) == device for i in range(local_processes))


def _engine(names: list[str], args, device: str) -> tuple[runner.GenerateFn, list]:
    """Load each model once and bind adafuse.generate to them: (generate, the loaded models)."""
    import adafuse

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lms = adafuse.load_models(names, device=device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    by_name = dict(zip(names, lms))
    # Items run item-major (every method on an item, then the next item), so the last prompt's
    # KV is the best one to keep: the next method shares the whole prompt, the next item the shots.
    # One prompt cache per thread: with --batch-items, each batch thread decodes its own item.
    local = threading.local()
    execution = execution_from_arguments(args)   # how it runs: the same text, so not in a method's settings

    def generate(models, prompt, cfg):
        cfg = dataclasses.replace(cfg, execution=execution)
        if not args.no_prompt_cache and not hasattr(local, "prompt_cache"):
            local.prompt_cache = adafuse.PromptCache()
        return adafuse.generate([by_name[m] for m in models], prompt, cfg,
                                prompt_cache=getattr(local, "prompt_cache", None))

    return generate, lms


def _check_out_dir(out_dir: Path, resume: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise tasks_mod.EvalDataError(f"--out {out_dir} is a file, not a directory")
    if resume and not (out_dir / "run.json").exists():
        raise tasks_mod.EvalDataError(f"--resume: {out_dir} holds no run (no run.json)")
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_run_json(out_dir: Path, argv, names, tasks, methods, world) -> None:
    path = out_dir / "run.json"
    info = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    info["invocations"].append({"command": _command(argv), "argv": argv, "models": names, "processes": world,
                                "tasks": [t.name for t in tasks], "methods": [m.label for m in methods],
                                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.write_text(json.dumps(info, indent=2) + "\n")


def _run_info(argv, names, world, seconds) -> dict:
    return {"command": _command(argv), "models": names, "processes": world, "wall_seconds": round(seconds, 1)}


def _command(argv) -> str:
    return "python -m adafuse eval " + " ".join(shlex.quote(a) for a in argv)


def _report_only(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m adafuse eval report",
                                description="Rebuild the reports of a run (finished or interrupted) from its item "
                                            "files, without loading models: each report name's (report, "
                                            "--report-name ...) from the latest invocation that wrote it.")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", help="benchmark directory, if not the one the run used")
    p.add_argument("--spm-model")
    a = p.parse_args(argv)
    out_dir = Path(a.out)
    if not (out_dir / "run.json").exists():
        raise tasks_mod.EvalDataError(f"{out_dir} holds no run (no run.json)")
    warn = lambda msg: print(f"warning: {msg}", file=sys.stderr)  # noqa: E731
    latest = {}                   # report name -> (its invocation, parsed); later invocations win
    for inv in json.loads((out_dir / "run.json").read_text())["invocations"]:
        args = build_parser().parse_args(inv["argv"])
        latest[args.report_name] = (inv, args)
    for inv, args in latest.values():
        if a.data_dir:
            args.data_dir = a.data_dir
        tasks = load_tasks(args)
        methods = runner.parse_methods(args.methods.split(","), inv["models"], tau=args.tau,
                                       max_words=args.max_words, branches=args.branches, sweeps=args.sweep)
        # load_done refuses records made with other settings (say, a prompt template changed since)
        results = {t.name: {m.slug: sorted(runner.load_done(out_dir, t, m, args.prompt_format, warn).values(),
                                           key=lambda r: (int(r.get("line", 0)), r["key"])) for m in methods}
                   for t in tasks}
        summary = report.summarize(tasks, methods, results, spm_model=a.spm_model or args.spm_model,
                                   extra={"command": inv["command"], "models": inv["models"],
                                          "processes": inv["processes"]})
        paths = report.write_reports(out_dir, summary, args.report_name)
        print(report.markdown(summary))
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def _merge(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m adafuse eval merge", description=merge.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the run to merge into")
    p.add_argument("--from", dest="source", required=True, help="the run (its --out folder) computed elsewhere")
    p.add_argument("--computed-on", help="where the source ran, e.g. \"cuda (one H200), float32\"; written into "
                                         "each added record (leave out when the source ran on this machine)")
    p.add_argument("--replace", metavar="TEXT",
                   help="give the source's record precedence over one of --out's whose computed_on contains TEXT")
    a = p.parse_args(argv)
    counts = merge.merge_run(Path(a.out), Path(a.source), a.computed_on, a.replace)
    print("| task | method | kept | added | replaced |\n| --- | --- | --- | --- | --- |")
    for (task, slug), c in counts.items():
        print(f"| {task} | {slug} | {c.kept} | {c.added} | {c.replaced} |")
    if any(c.added or c.replaced for c in counts.values()):
        print(f"\nmerged; rebuild the reports with: python -m adafuse eval report --out {a.out}", file=sys.stderr)
    else:
        print("\nnothing to merge: the run has every item of the source", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
