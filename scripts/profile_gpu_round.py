"""Where an AdaFuse round's time goes on one GPU (issue 17): a torch.profiler trace of one decode.

    python3 scripts/profile_gpu_round.py [--assets .gpu_assets] [--new-tokens 64] [--out DIR]

The random-weight Llama-3.1-8B and Mistral-7B shapes of scripts/bench_gpu.py on one GPU, tau 0.7,
M 3, B 1, the fast path, after two warm-up decodes (graphs captured for every row slot). For the models in turn
(Execution(parallel="off")) and in threads on streams of their own (the default), it prints per committed
token: wall time; GPU time, as the sum of kernel and copy durations and as the union of their
intervals (busy time: the difference is time two streams ran at once); GPU idle time; and the host
calls that wait or launch (stream syncs, graph launches, copies), by thread. DIR gets the Chrome
traces. Not a benchmark: the profiler itself slows the host side.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import adafuse  # noqa: E402
from adafuse import DecodeConfig, Execution  # noqa: E402
from bench_gpu import TEXT, build  # noqa: E402

HOST_CALLS = ("cudaStreamSynchronize", "cudaGraphLaunch", "cudaMemcpyAsync", "cudaLaunchKernel",
              "cudaEventSynchronize", "cudaDeviceSynchronize", "cudaStreamWaitEvent")


def busy_ms(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (microseconds in, milliseconds out)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if a > end:
            total, end = total + (b - a), b
        elif b > end:
            total, end = total + (b - end), b
    return total / 1000


def profile(lms, prompt: str, cfg: DecodeConfig, out: Path | None, label: str,
            with_stack: bool = False) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    for _ in range(2):   # warm: graphs (one per batch-row slot, as bench_gpu), buffers
        adafuse.generate(lms, prompt, cfg)
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=with_stack) as prof:
        t = time.perf_counter()
        trace = adafuse.generate(lms, prompt, cfg)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    if out:   # xz: a trace of ~200 graph replays is tens of MB as JSON
        import lzma
        raw = out / f"{label}.json"
        prof.export_chrome_trace(str(raw))
        with lzma.open(out / f"{label}.json.xz", "wb", preset=6) as f:
            f.write(raw.read_bytes())
        raw.unlink()
    tokens = statistics.mean(trace.stats.new_tokens.values())
    gpu, host = [], defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            gpu.append((e.time_range.start, e.time_range.end))
        elif e.name in HOST_CALLS:
            h = host[f"{e.name} (thread {e.thread})"]
            h[0] += 1
            h[1] += e.time_range.elapsed_us() / 1000
    per = 1 / tokens
    return {"wall_ms_per_token": 1000 * wall * per,
            "gpu_sum_ms_per_token": sum(b - a for a, b in gpu) / 1000 * per,
            "gpu_busy_ms_per_token": busy_ms(gpu) * per,
            "gpu_idle_ms_per_token": (1000 * wall - busy_ms(gpu)) * per,
            "host_calls_ms_per_token": {k: (n, round(ms * per, 3)) for k, (n, ms) in sorted(host.items())},
            "rounds": len(trace.rounds), "committed_tokens": tokens,
            "forward_passes": dict(trace.stats.forward_passes)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[1] / ".gpu_assets")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--with-stack", action="store_true",
                    help="also a run with Python stacks in the trace (attributes host time; slows it)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("profile_gpu_round.py needs a CUDA GPU")
    lms = [build("llama-8b-shape", args.assets / "smollm2", 128256, "cuda:0"),
           build("mistral-7b-shape", args.assets / "mistral-v3", 32768, "cuda:0")]
    tok = lms[0].tokenizer
    prompt = tok.decode(tok(TEXT * 40, add_special_tokens=False).input_ids[:args.prompt_tokens])
    cfg = DecodeConfig(tau=0.7, max_words=3, branches=1, max_new_tokens=args.new_tokens)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    res = {}
    in_turn = dataclasses.replace(cfg, execution=Execution(parallel="off"))
    # the anchor's own host gaps: one model's greedy decoding on the same engine
    greedy = DecodeConfig(mode="greedy", max_new_tokens=args.new_tokens)
    runs = [("greedy_llama", lms[:1], greedy, False),
            ("sequential", lms, in_turn, False),
            ("threads", lms, cfg, False)]
    if args.with_stack:
        runs.append(("threads_stack", lms, cfg, True))
    for label, models, run_cfg, stack in runs:
        res[label] = profile(models, prompt, run_cfg, args.out, label, stack)
        print(label, json.dumps(res[label], indent=1), flush=True)
    if args.out:
        (args.out / "profile_gpu_round.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
