"""GPU speed of AdaFuse with real model weights, against each model's own greedy decoding, side by
side in one process.

    python3 scripts/bench_gpu_real.py [--models A,B [--models C,D ...]] [--new-tokens 64] [--reps 3]
                                      [--prompts qa,math,translation] [--device cuda] [--out DIR]
    python3 scripts/bench_gpu_real.py --report DIR/bench_gpu_real.json     # tables of a saved run

Models are loaded once each by name (`adafuse.load_model`, bf16 on CUDA, float32 on CPU), e.g. the
converted embedded presets in $ADAFUSE_CACHE. Default pairs: gemma3-270m + qwen2.5-coder-0.5b-instruct
and smollm2-135m-instruct + gemma3-270m.

Prompts: the app's task presets (assets/examples/tasks.json), the first of each task in --prompts
(all raw prompts). For speed every method gets --new-tokens as its budget and no stop strings, so
all produce the same number of tokens (barring an end token); prefill is included in every time.

Per model and prompt, greedy ms per output token (median of --reps after warm-up):
  hf_dynamic         HF `generate`, eager forward, dynamic KV cache (the secondary anchor);
  hf_static_compile  HF `generate`, cache_implementation="static" + torch.compile (CompileConfig
                     defaults: inductor, reduce-overhead); on CPU the static cache runs uncompiled;
  engine             this project's engine, mode greedy, fast path asked for (Execution(fast="on"),
                     CUDA graphs on); the fast path covers Llama/Mistral/Qwen2 configs, others
                     (Gemma-3) run eager: the path actually taken is recorded;
  optimized          min(hf_static_compile, engine) where they ran: the anchor.
Per pair and prompt, AdaFuse (tau 0.7, M 3, B 1) ms per committed token (the mean over the models
of their new tokens, as in bench_gpu.py) on the fast path (fast="on", the same as "auto" on CUDA;
on CPU it runs the fast path's eager form for supported models) and on the eager path (fast="off"),
words per round, forward passes per committed token per model, rounds, stop reason, and whether
both paths gave the same text (reported, not asserted). Ratios: AdaFuse fast / sum of the members'
optimized greedy, / sum of their hf_dynamic greedy, / sum of their weight-bandwidth limits (weight
bytes / measured device copy bandwidth).

Every measurement that fails is recorded as {"error": ...} and the run goes on. HF's compiled
generate runs last (the riskiest step, and the slowest to warm up); with --out the JSON is
rewritten after every measurement, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import copy_bandwidth, hf_greedy, sync  # noqa: E402  (also sets HF_HUB_OFFLINE)

import adafuse  # noqa: E402
from adafuse import DecodeConfig, Execution, fast  # noqa: E402

TASKS_FILE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "tasks.json"
DEFAULT_PAIRS = ["gemma3-270m,qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct,gemma3-270m"]
FAST = Execution(fast="on")
EAGER = Execution(fast="off", parallel="off")
ADAFUSE_CFG = dict(tau=0.7, max_words=3, branches=1)


def log(*a) -> None:
    print(*a, flush=True)


def attempt(label: str, fn) -> dict:
    """fn()'s result, or {"error": ...} (printed) if it raises: one failure must not end the run."""
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        notes = sorted({str(w.message)[:300] for w in caught if "adafuse" in str(w.message)})
        if notes:
            out["warnings"] = notes
    except Exception as e:  # noqa: BLE001 - record and go on
        traceback.print_exc(limit=3)
        out = {"error": f"{type(e).__name__}: {str(e)[:1000]}"}
    log(f"  {label}: {summary(out)} ({time.perf_counter() - t:.0f} s)")
    return out


def summary(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"][:200]
    keys = ("copy_bytes_per_s", "ms_per_token", "path", "compiled", "words_per_round", "fwd_per_token", "stop_reason")
    return ", ".join(f"{k} {fmt(r[k])}" for k in keys if k in r)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, dict):
        return "/".join(fmt(x) for x in v.values())
    return str(v)


def load_prompts(tasks: list[str]) -> dict[str, dict]:
    """The first preset of each task, as adafuse/ui/presets.py reads them (without importing the UI)."""
    presets = json.loads(TASKS_FILE.read_text(encoding="utf-8"))
    out = {}
    for task in tasks:
        p = next(p for p in presets if p["task"] == task)
        if p.get("prompt_format", "raw") != "raw":
            raise SystemExit(f"preset {p['name']!r} is a chat prompt; this benchmark sends raw prompts")
        out[task] = {"preset": p["name"], "prompt": p["prompt"], "preset_stop": p.get("stop", []),
                     "preset_max_new_tokens": p.get("max_new_tokens", 64)}
    return out


def timed(fn) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def median_run(runs: list[tuple[float, object]]):
    """The (ms per token, payload) of the median run."""
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


# --- single models ------------------------------------------------------------------------------

def ids_of(lm, prompt: str) -> torch.Tensor:
    return lm.tokenizer(prompt, return_tensors="pt").input_ids.to(lm.device)   # as state.start (raw)


def hf_dynamic(lm, prompt: str, new: int, reps: int) -> dict:
    ids = ids_of(lm, prompt)
    hf_greedy(lm, ids, new)
    ms = [1000 * hf_greedy(lm, ids, new) / new for _ in range(reps)]
    return {"ms_per_token": statistics.median(ms), "all_ms_per_token": ms}


def hf_static(lm, prompt: str, new: int, reps: int, compile_: bool) -> dict:
    """HF generate over a static KV cache; on CUDA with torch.compile of the decode step (HF compiles
    only when the cache is static and the device is a GPU)."""
    ids = ids_of(lm, prompt)
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False,
              pad_token_id=lm.eos_id, cache_implementation="static")
    if compile_:
        from transformers import CompileConfig
        kw["compile_config"] = CompileConfig()
    out = {}

    def run():
        out["tokens"] = lm.model.generate(ids, **kw).shape[1] - ids.shape[1]

    for _ in range(2):   # compile (per prompt length), then CUDA-graph recording
        run()
    ms = [1000 * timed(run) / new for _ in range(reps)]
    return {"ms_per_token": statistics.median(ms), "all_ms_per_token": ms, "new_tokens": out["tokens"],
            "compiled": hasattr(lm.model, "_compiled_call")}


def engine_path(lm, execution: Execution) -> str:
    """The path adafuse.generate takes for `lm` under `execution` (what fast.claim decides)."""
    if not fast.enabled(lm, execution.fast):
        return "eager"
    engine = getattr(lm, "_fast_engine", None)
    if engine is None:
        return "fast?"
    graphs = engine.use_graphs() and bool(engine.graphs)
    return "fast" + ("+graphs" if graphs else "") + ("+compiled-ops" if engine.ops.compiled else "")


def engine_greedy(lm, prompt: str, new: int, reps: int) -> dict:
    cfg = DecodeConfig(mode="greedy", max_new_tokens=new, execution=FAST)
    run = lambda: adafuse.generate([lm], prompt, cfg)  # noqa: E731
    for _ in range(2):
        run()
    runs = []
    for _ in range(reps):
        out = {}
        seconds = timed(lambda: out.setdefault("trace", run()))
        tokens = max(1, sum(out["trace"].stats.new_tokens.values()))
        runs.append((1000 * seconds / tokens, out["trace"]))
    ms, trace = median_run(runs)
    return {"ms_per_token": ms, "all_ms_per_token": [r[0] for r in runs], "path": engine_path(lm, FAST),
            "new_tokens": sum(trace.stats.new_tokens.values()), "stop_reason": trace.stats.stop_reason}


def optimized(g: dict) -> dict:
    """The anchor: the faster of HF static+compile and the engine's greedy, where they ran."""
    ran = {k: g[k]["ms_per_token"] for k in ("hf_static_compile", "engine") if "ms_per_token" in g.get(k, {})}
    if not ran:
        return {"error": "neither hf_static_compile nor engine ran"}
    best = min(ran, key=ran.get)
    return {"ms_per_token": ran[best], "by": best}


def bandwidth(device: torch.device) -> float:
    """Copy bandwidth in bytes (read + written) per second; on CPU a small host copy."""
    if device.type == "cuda":
        return copy_bandwidth(device)
    x = torch.empty(256 * 1024**2, dtype=torch.uint8)
    y = torch.empty_like(x)
    y.copy_(x)
    t = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    return 2 * x.numel() * 5 / (time.perf_counter() - t)


# --- pairs --------------------------------------------------------------------------------------

def adafuse_run(lms, prompt: str, new: int, reps: int, execution: Execution) -> dict:
    cfg = DecodeConfig(max_new_tokens=new, execution=execution, **ADAFUSE_CFG)
    run = lambda: adafuse.generate(lms, prompt, cfg)  # noqa: E731
    for _ in range(2 if execution is FAST else 1):   # graphs are captured per row slot: 2 warm-ups
        run()
    runs = []
    for _ in range(reps):
        out = {}
        seconds = timed(lambda: out.setdefault("trace", run()))
        tokens = statistics.mean(out["trace"].stats.new_tokens.values())
        runs.append((1000 * seconds / tokens, out["trace"]))
    ms, trace = median_run(runs)
    tokens = statistics.mean(trace.stats.new_tokens.values())
    words = trace.words_per_round()
    return {"ms_per_token": ms, "all_ms_per_token": [r[0] for r in runs],
            "path": {lm.name: engine_path(lm, execution) for lm in lms}, "committed_tokens": tokens,
            "new_tokens": dict(trace.stats.new_tokens), "rounds": len(trace.rounds),
            "words_per_round": statistics.mean(words) if words else 0.0,
            "words_histogram": {w: words.count(w) / len(words) for w in sorted(set(words))},
            "fwd_per_token": {n: f / tokens for n, f in trace.stats.forward_passes.items()},
            "stop_reason": trace.stats.stop_reason, "text": trace.text}


def first_difference(a: str, b: str) -> int | None:
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def ratios(res: dict, pair: list[str], task: str) -> dict:
    g, a = res["greedy"], res["adafuse"]["+".join(pair)][task]

    def total(kind):
        vals = [g[m][task].get(kind, {}).get("ms_per_token") for m in pair]
        return sum(vals) if None not in vals else None

    bw = [res["bandwidth"].get(m, {}).get("ms_limit") for m in pair]
    refs = {"fast/sum_optimized_greedy": ("fast", total("optimized")),
            "fast/sum_hf_dynamic_greedy": ("fast", total("hf_dynamic")),
            "eager/sum_hf_dynamic_greedy": ("eager", total("hf_dynamic")),
            "fast/sum_bandwidth_limits": ("fast", sum(bw) if None not in bw else None)}
    out = {}
    for key, (path, ref) in refs.items():
        ms = a.get(path, {}).get("ms_per_token")
        out[key] = ms / ref if ms is not None and ref else None
    return out


# --- report -------------------------------------------------------------------------------------

def report(res: dict) -> None:
    tasks = list(res["prompts"])
    cols = tasks + ["mean"]

    def row(label, values):
        vals = [v for v in values if v is not None]
        values = list(values) + [statistics.mean(vals) if len(vals) == len(values) else None]
        cells = ["—" if v is None else str(v) if isinstance(v, int) else
                 f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f}" for v in values]
        log(f"| {label} | " + " | ".join(cells) + " |")

    def ms(r):
        return r.get("ms_per_token") if isinstance(r, dict) else None

    info = res["info"]
    log(f"\n=== AdaFuse with real weights: {info['device_name']}; torch {info['torch']}; transformers "
        f"{info['transformers']}; {info['dtype']}; {info['new_tokens']} new tokens, no stop strings, prefill "
        f"included; median of {info['reps']}; copy bandwidth "
        f"{res['bandwidth'].get('copy_bytes_per_s', 0) / 1e9:.0f} GB/s (read + write) ===")
    for key, per_task in res["adafuse"].items():
        pair = key.split("+")
        log(f"\n#### {' + '.join(pair)} (tau 0.7, M 3, B 1)\n")
        log("| ms per token | " + " | ".join(cols) + " |")
        log("| --- |" + " --- |" * len(cols))
        for m in pair:
            g = res["greedy"].get(m, {})
            paths = {g[t].get("engine", {}).get("path") for t in tasks if t in g} - {None}
            compiled = {g[t].get("hf_static_compile", {}).get("compiled") for t in tasks if t in g} - {None}
            row(f"{m}: HF generate, dynamic cache", [ms(g.get(t, {}).get("hf_dynamic")) for t in tasks])
            row(f"{m}: HF generate, static cache{' + compile' if True in compiled else ''}",
                [ms(g.get(t, {}).get("hf_static_compile")) for t in tasks])
            row(f"{m}: engine greedy [{','.join(sorted(paths))}]", [ms(g.get(t, {}).get("engine")) for t in tasks])
            row(f"{m}: **optimized greedy** (min)", [ms(g.get(t, {}).get("optimized")) for t in tasks])
            bw = res["bandwidth"].get(m, {}).get("ms_limit")
            row(f"{m}: bandwidth limit", [bw for _ in tasks])
        fast_paths = {p for t in tasks for p in per_task[t].get("fast", {}).get("path", {}).values()}
        row(f"AdaFuse, fast path [{','.join(sorted(fast_paths))}]", [ms(per_task[t].get("fast")) for t in tasks])
        row('AdaFuse, eager path (fast="off")', [ms(per_task[t].get("eager")) for t in tasks])
        for k in ("fast/sum_optimized_greedy", "fast/sum_hf_dynamic_greedy", "eager/sum_hf_dynamic_greedy",
                  "fast/sum_bandwidth_limits"):
            row(f"**ratio AdaFuse {k}**", [res["ratios"].get(key, {}).get(t, {}).get(k) for t in tasks])
        row("words per round (fast)", [per_task[t].get("fast", {}).get("words_per_round") for t in tasks])
        for m in pair:
            row(f"fwd per committed token, {m}",
                [per_task[t].get("fast", {}).get("fwd_per_token", {}).get(m) for t in tasks])
        row("rounds (fast)", [per_task[t].get("fast", {}).get("rounds") for t in tasks])
        log("| stop reason (fast) | " + " | ".join(str(per_task[t].get("fast", {}).get("stop_reason", "—"))
                                                  for t in tasks) + " | |")
        log("| fast text == eager text | " + " | ".join(
            "—" if "same_text_fast_eager" not in per_task[t] else
            ("yes" if per_task[t]["same_text_fast_eager"] else f"no (from char {per_task[t]['first_difference']})")
            for t in tasks) + " | |")
    errors = sorted(set(errors_in(res)))
    if errors:
        log("\nerrors:\n" + "\n".join(f"- {e[:300]}" for e in errors))
    if "seconds" in res:
        log(f"\ntotal {res['seconds']:.0f} s")


def errors_in(node, where: str = ""):
    """'where: error' for every failed measurement in the results."""
    if isinstance(node, dict):
        if "error" in node:
            yield f"{where}: {node['error']}"
        for k, v in node.items():
            yield from errors_in(v, f"{where}/{k}" if where else k)


# --- main ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", action="append", help="a pair (comma list); repeatable")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prompts", default="qa,math,translation", help="preset tasks (comma list)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-compile", action="store_true", help="no HF static-cache + torch.compile rows")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None, help="print the tables of a saved JSON and exit")
    args = ap.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return
    t_start = time.perf_counter()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible: use --device cpu")
    pairs = [[m.strip() for m in p.split(",") if m.strip()] for p in (args.models or DEFAULT_PAIRS)]
    names = list(dict.fromkeys(m for p in pairs for m in p))
    prompts = load_prompts(args.prompts.split(","))
    res = {"info": {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else "CPU",
                    "torch": torch.__version__, "transformers": __import__("transformers").__version__,
                    "new_tokens": args.new_tokens, "reps": args.reps, "argv": sys.argv[1:],
                    "adafuse": dict(ADAFUSE_CFG), "fast": dataclasses.asdict(FAST), "eager": dataclasses.asdict(EAGER)},
           "prompts": {t: {k: v for k, v in p.items() if k != "prompt"} for t, p in prompts.items()},
           "load": {}, "bandwidth": {}, "greedy": {}, "adafuse": {}, "ratios": {}}

    def save():
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_gpu_real.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))

    log(json.dumps(res["info"]))
    lms = {}
    for name in names:
        t = time.perf_counter()
        try:
            lms[name] = adafuse.load_model(name, device=args.device)
            lm = lms[name]
            res["load"][name] = {"seconds": time.perf_counter() - t, "dtype": str(lm.dtype),
                                 "model_type": lm.model.config.model_type,
                                 "fast_path_supported": fast.supported(lm)}
        except Exception as e:  # noqa: BLE001
            res["load"][name] = {"error": f"{type(e).__name__}: {e}"}
        log(name, res["load"][name])
    res["info"]["dtype"] = str(next(iter(lms.values())).dtype) if lms else "?"
    if not lms:
        save()
        sys.exit("no model loaded")

    res["bandwidth"] = attempt("copy bandwidth", lambda: {"copy_bytes_per_s": bandwidth(device)})
    for name, lm in lms.items():
        nbytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        bw = res["bandwidth"].get("copy_bytes_per_s")
        res["bandwidth"][name] = {"weight_bytes": nbytes, "ms_limit": 1000 * nbytes / bw if bw else None}
    for task, p in prompts.items():
        p["tokens"] = res["prompts"][task]["tokens"] = {n: len(lm.tokenizer(p["prompt"]).input_ids)
                                                        for n, lm in lms.items()}
    save()

    # Greedy, per model once (a model in two pairs is measured once): HF eager and the engine.
    for name, lm in lms.items():
        res["greedy"][name] = {task: {} for task in prompts}
        for task, p in prompts.items():
            g = res["greedy"][name][task]
            log(f"{name} / {task}")
            g["hf_dynamic"] = attempt("HF generate dynamic",
                                      lambda: hf_dynamic(lm, p["prompt"], args.new_tokens, args.reps))
            g["engine"] = attempt("engine greedy",
                                  lambda: engine_greedy(lm, p["prompt"], args.new_tokens, args.reps))
            g["optimized"] = optimized(g)
            save()

    # AdaFuse per pair, fast path then eager path.
    for pair in pairs:
        key = "+".join(pair)
        if any(m not in lms for m in pair):
            res["adafuse"][key] = {t: {"error": "a model did not load"} for t in prompts}
            continue
        members = [lms[m] for m in pair]
        res["adafuse"][key] = {}
        for task, p in prompts.items():
            log(f"AdaFuse {key} / {task}")
            a = res["adafuse"][key][task] = {}
            for path, execution in (("fast", FAST), ("eager", EAGER)):
                a[path] = attempt(f"{path} path",
                                  lambda: adafuse_run(members, p["prompt"], args.new_tokens, args.reps, execution))
            if "text" in a["fast"] and "text" in a["eager"]:
                a["same_text_fast_eager"] = a["fast"]["text"] == a["eager"]["text"]
                a["first_difference"] = first_difference(a["fast"]["text"], a["eager"]["text"])
            save()

    # HF static cache + torch.compile, last: the slowest to warm up and the likeliest to fail.
    # Longest prompt first, so that the static cache made for it serves the shorter ones.
    if not args.skip_compile:
        for name, lm in lms.items():
            for task, p in sorted(prompts.items(), key=lambda kv: -max(kv[1]["tokens"].values())):
                g = res["greedy"][name][task]
                log(f"{name} / {task}")
                g["hf_static_compile"] = attempt(
                    "HF generate static" + (" + compile" if cuda else " (CPU: not compiled)"),
                    lambda: hf_static(lm, p["prompt"], args.new_tokens, args.reps, compile_=cuda))
                g["optimized"] = optimized(g)
                save()

    for pair in pairs:
        key = "+".join(pair)
        if all(m in lms for m in pair):
            res["ratios"][key] = {t: ratios(res, pair, t) for t in prompts}
    res["seconds"] = time.perf_counter() - t_start
    save()
    report(res)


if __name__ == "__main__":
    main()
