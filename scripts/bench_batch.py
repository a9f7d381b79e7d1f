"""Item batching, measured: the same items decoded one at a time and W at a time (adafuse/batch.py),
side by side in one process, alternating arms on every repetition.

    python scripts/bench_batch.py --task gsm8k --items 8 --width 8 --max-new-tokens 48 --reps 3

Prints per arm the median wall seconds, the ratio, model forwards run vs requested, and whether
every item's text is the same in both arms. Both arms use prompt caches warmed on the task's
few-shot prefix, as an evaluation does (sequential: one cache; batched: one per thread).
Needs the task files (../shared/bench or --data-dir); threads default to 1 (see docs/EVAL.md).
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import adafuse  # noqa: E402
from adafuse import batch  # noqa: E402
from adafuse.eval import tasks as tasks_mod  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--data-dir")
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--mode", default="adafuse", choices=("adafuse", "fixed", "greedy"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m",
                   help="the pair the documented figures were measured on")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    lms = adafuse.load_models(args.models.split(","), device="cpu")
    if args.mode == "greedy":
        lms = lms[1:]
    task = tasks_mod.load_task(args.task, args.data_dir, max_new_tokens=args.max_new_tokens)
    prompts = [task.prompt(item) for item in task.items[:args.items]]
    cfg = adafuse.DecodeConfig(mode=args.mode, max_new_tokens=args.max_new_tokens, stop=task.spec.stop)
    warm = task.prompt(task.items[-1])   # an item not in the measured set: its prefill leaves the shots cached

    warmed = adafuse.PromptCache()      # the shots prefilled once, outside the clock, for every arm
    adafuse.generate(lms, warm, adafuse.DecodeConfig(max_new_tokens=1), prompt_cache=warmed)

    def sequential():
        cache = warmed.copy()
        t0 = time.perf_counter()
        out = [adafuse.generate(lms, p, cfg, prompt_cache=cache) for p in prompts]
        return time.perf_counter() - t0, out, None

    def batched():
        caches = [warmed.copy() for _ in range(args.width)]
        out = [None] * len(prompts)

        def job(i):
            return lambda: out.__setitem__(i, adafuse.generate(lms, prompts[i], cfg, prompt_cache=caches[batch.slot()]))
        t0 = time.perf_counter()
        b = batch.run_batched([job(i) for i in range(len(prompts))], args.width)
        return time.perf_counter() - t0, out, b

    times = {"one at a time": [], f"{args.width} at a time": []}
    texts, stats = {}, None
    for rep in range(args.reps):
        arms = [("one at a time", sequential), (f"{args.width} at a time", batched)]
        for name, fn in (arms if rep % 2 == 0 else arms[::-1]):
            seconds, out, b = fn()
            times[name].append(seconds)
            texts[name] = [t.text for t in out]
            stats = b or stats
            print(f"rep {rep}: {name}: {seconds:.1f} s", flush=True)
    seq, bat = (statistics.median(v) for v in times.values())
    same = sum(a == b for a, b in zip(*texts.values()))
    print(f"\ncommand: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"{args.task}, {len(prompts)} items, {args.mode}, max_new_tokens {args.max_new_tokens}, "
          f"torch threads {args.threads}, {args.reps} reps (median)")
    print(f"one at a time: {seq:.1f} s | {args.width} at a time: {bat:.1f} s | ratio {seq / bat:.2f}x")
    print(f"batched arm: {stats.requests} forwards requested, {stats.forwards} run "
          f"({stats.requests / stats.forwards:.1f} requests per forward, {stats.rows} rows); "
          f"same text in both arms: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
