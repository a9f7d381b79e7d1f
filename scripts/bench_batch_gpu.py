"""Item batching on a GPU, with random-weight models of real 7-8B shapes (real weights do not fit
on the lent GPU machine): Llama-3.1-8B shape (SmolLM2 tokenizer) + Mistral-7B shape (Mistral v3
tokenizer), bf16, both on one GPU; built as in scripts/bench_gpu.py (tokenizers in .gpu_assets).

    python3 scripts/bench_batch_gpu.py --items 8 --width 8 --new-tokens 32 --reps 2

Arms, alternating on every repetition: the items one at a time on the eager path, W at a time on
the eager path (adafuse/batch.py), and one at a time on the fast path (static cache + CUDA graphs,
the engine's default on CUDA for these architectures) as the reference. Random weights make
nearly flat distributions: the texts mean nothing, the timing is that of real shapes.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import adafuse  # noqa: E402
from adafuse import batch  # noqa: E402
from bench_gpu import TEXT, build  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[1] / ".gpu_assets")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prompt-words", type=int, default=300)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    llama = build("llama-8b-shape", args.assets / "smollm2", 128256, "cuda:0")
    mistral = build("mistral-7b-shape", args.assets / "mistral-v3", 32768, "cuda:0")
    lms = [llama, mistral]
    words = (TEXT * 20).split()
    prompts = [" ".join(words[7 * i: 7 * i + args.prompt_words]) for i in range(args.items)]
    eager = adafuse.DecodeConfig(max_new_tokens=args.new_tokens, execution=adafuse.Execution(fast="off"))
    fast = adafuse.DecodeConfig(max_new_tokens=args.new_tokens)

    def one_at_a_time(cfg):
        return [adafuse.generate(lms, p, cfg) for p in prompts]

    def batched(cfg):
        out = [None] * len(prompts)
        batch.run_batched([(lambda i=i: out.__setitem__(i, adafuse.generate(lms, prompts[i], cfg)))
                           for i in range(len(prompts))], args.width)
        return out

    arms = {"eager, one at a time": (one_at_a_time, eager),
            f"eager, {args.width} at a time": (batched, eager),
            "fast path, one at a time": (one_at_a_time, fast)}
    for cfg in (eager, fast):   # warm
        adafuse.generate(lms, prompts[0], dataclasses.replace(cfg, max_new_tokens=4))
    times = {k: [] for k in arms}
    texts, tokens = {}, {}
    for rep in range(args.reps):
        order = list(arms) if rep % 2 == 0 else list(arms)[::-1]
        for name in order:
            fn, cfg = arms[name]
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(cfg)
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            texts[name] = [t.text for t in out]
            tokens[name] = sum(len(t.text.split()) for t in out)
            print(f"rep {rep}: {name}: {times[name][-1]:.2f} s", flush=True)
    print(f"\ncommand: python3 {' '.join(sys.argv)}")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, transformers {__import__('transformers').__version__}; "
          f"RANDOM-WEIGHT models of Llama-3.1-8B and Mistral-7B shapes, bf16, one GPU; {args.items} items, "
          f"{args.new_tokens} new tokens, ~{args.prompt_words}-word prompts; median of {args.reps}")
    base = statistics.median(times["eager, one at a time"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} s | {base / m:.2f}x vs eager one at a time |")
    a, b = texts["eager, one at a time"], texts[f"eager, {args.width} at a time"]
    print(f"same text, eager one at a time vs batched: {sum(x == y for x, y in zip(a, b))}/{len(a)}")


if __name__ == "__main__":
    main()
