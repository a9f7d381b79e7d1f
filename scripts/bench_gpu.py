"""GPU speed of AdaFuse on 7-8B-shaped models with random weights, side by side in one run.

    python3 scripts/bench_gpu.py [--assets .gpu_assets] [--new-tokens 64] [--out DIR]

Builds two random-weight bf16 models of real shapes (weights are random: text is gibberish and
first-token margins are near 0, so tau 0.7 behaves almost like tau > 1; tau 0 shows long rounds):
  llama-8b-shape:   Llama-3.1-8B (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336,
                    vocab 128256, llama3 RoPE) with the SmolLM2 tokenizer (49152 ids; the logits
                    past them are padding, masked by the engine);
  mistral-7b-shape: Mistral-7B-v0.3 (same but vocab 32768, no sliding window) with the real
                    Mistral-7B-v0.3 tokenizer (mistral-common's tokenizer.model.v3, 32768 ids).
Both tokenizers are read from --assets (smollm2/ and mistral-v3/, tokenizer.json + config).

Reports, for a 512-token prompt and --new-tokens new tokens (prefill included everywhere):
  - each model's own optimized greedy ms/token, the anchor: the better of the project's fast path
    (mode greedy: static KV + CUDA graphs) and HF `generate` with a static cache (which transformers
    compiles itself), medians of --reps runs in this process; HF eager `generate` as a secondary row
    (host-bound and noisy: it moved from 41.5 to 60.6 ms between two processes on one machine);
  - AdaFuse (M 3, B 1) ms per committed token at tau 0.7, 0 and 1.5, on one GPU with the eager
    path (Execution(fast="off")), on one GPU with the fast path (static KV + CUDA graphs), and with two
    GPUs (one model each) run in turn and concurrently (threads);
  - forward passes per committed token per model, and the bandwidth limit (weight bytes / 4.8 TB/s,
    and / the copy bandwidth measured here);
  - checks: fast-path logits against HF's, and that concurrency does not change the output.
A committed token is counted as the mean over the two models of its new tokens (own tokenizer),
as in scripts/bench_cpu.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import adafuse  # noqa: E402
from adafuse import DecodeConfig, Execution  # noqa: E402
from adafuse.models import _wrap  # noqa: E402
from adafuse.state import start  # noqa: E402

DATASHEET_BW = 4.8e12
TEXT = ("The history of the city begins with a small settlement on the river, where traders met to "
        "exchange grain, salt and cloth. Over the centuries the town grew into a regional centre, with "
        "a cathedral, a university and a busy port. In the nineteenth century railways connected it to "
        "the capital, and factories brought workers from the surrounding villages. Today it is known for "
        "its museums, its old bridges and a festival of music that fills the streets every summer.\n")


def shapes(name: str, vocab: int, tok) -> "object":
    from transformers import LlamaConfig, MistralConfig
    common = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=vocab, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    if name.startswith("llama"):
        return LlamaConfig(max_position_embeddings=131072, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, **common)
    return MistralConfig(max_position_embeddings=32768, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common)


def build(name: str, tokenizer_dir: Path, vocab: int, device: str, like=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(shapes(name, vocab, tok), dtype=torch.bfloat16)
    if next(model.parameters()).device != torch.device(device):
        model.to(device)
    if like is not None:  # the same random weights on another GPU
        model.load_state_dict(like.model.state_dict())
    model.eval()
    return _wrap(name, model, tok)


def sync():
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)


@torch.inference_mode()
def hf_greedy(lm, ids: torch.Tensor, new: int, **generate_kwargs) -> float:
    sync()
    t = time.perf_counter()
    lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                      do_sample=False, pad_token_id=lm.eos_id, **generate_kwargs)
    sync()
    return time.perf_counter() - t


def median(xs):
    return sorted(xs)[len(xs) // 2]


def hf_static_greedy_ms(lm, ids: torch.Tensor, new: int, reps: int) -> float:
    """HF's optimized greedy: a static cache, whose decoding forward transformers compiles
    (GenerationConfig.compile_config); two warm-up runs pay the compilation."""
    for _ in range(2):
        hf_greedy(lm, ids, new, cache_implementation="static")
    return 1000 * median([hf_greedy(lm, ids, new, cache_implementation="static") for _ in range(reps)]) / new


def adafuse_run(lms, prompt: str, tau: float, new: int, execution: Execution, reps: int) -> dict:
    cfg = DecodeConfig(tau=tau, max_words=3, branches=1, max_new_tokens=new, execution=execution)
    # Warm-up: graphs (one per batch-row slot), buffers, allocator. The fast path's needs the same
    # length to meet every slot; the eager path's only needs to touch the code.
    warm = cfg if execution.fast != "off" else dataclasses.replace(cfg, max_new_tokens=8)
    for _ in range(2 if warm is cfg else 1):
        adafuse.generate(lms, prompt, warm)
    runs = []
    for _ in range(reps):
        sync()
        trace = adafuse.generate(lms, prompt, cfg)
        sync()
        tokens = statistics.mean(trace.stats.new_tokens.values())
        runs.append((trace.stats.seconds, tokens, trace))
    seconds, tokens, trace = sorted(runs, key=lambda r: r[0] / r[1])[len(runs) // 2]
    names = list(trace.stats.forward_passes)
    words = trace.words_per_round()
    return {"ms_per_token": 1000 * seconds / tokens, "committed_tokens": tokens,
            "new_tokens": dict(trace.stats.new_tokens), "rounds": len(trace.rounds),
            "words_per_round": statistics.mean(words) if words else 0.0,
            "fwd_per_token": {n: trace.stats.forward_passes[n] / tokens for n in names},
            "stop_reason": trace.stats.stop_reason, "text": trace.text,
            "all_ms_per_token": [1000 * s / t for s, t, _ in runs]}


def copy_bandwidth(device: str) -> float:
    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - t)


@torch.inference_mode()
def check_fast_logits(lm, prompt: str) -> dict:
    """Relative error of the fast path's last-position log-probs against HF's forward (both bf16)."""
    ids = lm.tokenizer(prompt).input_ids
    ref = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, -1].float()
    ref[lm.vocab.n_tokens:] = float("-inf")   # the engine masks padded ids before normalising
    ref = torch.log_softmax(ref, -1)
    state = start(lm, lm.name, prompt, "raw", execution=Execution(fast="on"))
    got = state.next_logprobs
    # bf16 noise floor: HF itself, prefilling all but the last token and then decoding it
    from transformers import DynamicCache
    cache = DynamicCache()
    x = torch.tensor([ids], device=lm.device)
    lm.model(input_ids=x[:, :-1], use_cache=True, **{lm.cache_kwarg: cache})
    alt = lm.model(input_ids=x[:, -1:], use_cache=True, **{lm.cache_kwarg: cache}).logits[0, -1].float()
    alt[lm.vocab.n_tokens:] = float("-inf")
    alt = torch.log_softmax(alt, -1)
    finite = torch.isfinite(ref)
    p_ref, p_got, p_alt = ref[finite].exp(), got[finite].exp(), alt[finite].exp()
    return {"fast_path_used": type(state.cache).__name__ == "FastCache",
            "prob_rel_err_fast_vs_hf": float((p_got - p_ref).norm() / p_ref.norm()),
            "prob_rel_err_hf_incremental_vs_hf": float((p_alt - p_ref).norm() / p_ref.norm()),
            "same_argmax": int(got.argmax()) == int(ref.argmax())}


def graph_step_ms(lm, key: tuple[int, int, int] = (0, 1, 1), reps: int = 50) -> float | None:
    """GPU time of one replay of a captured graph, by CUDA events: by default the 1-token decode
    graph of row 0; `key` is (first row, rows, tokens) as fast.FastEngine.graphs keys them."""
    engine = getattr(lm, "_fast_engine", None)
    g = engine.graphs.get(key) if engine else None
    if g is None or g.graph is None:
        return None
    with torch.cuda.device(lm.device):
        g.graph.replay()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            g.graph.replay()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[1] / ".gpu_assets")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--eager-reps", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip-eager-adafuse", action="store_true")
    ap.add_argument("--skip-nographs", action="store_true", help="skip the fast path without CUDA graphs (slow)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")
    n_gpu = torch.cuda.device_count()
    t_start = time.perf_counter()
    info = {"gpus": [torch.cuda.get_device_name(i) for i in range(n_gpu)], "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "new_tokens": args.new_tokens}
    print(json.dumps(info), flush=True)

    llama = build("llama-8b-shape", args.assets / "smollm2", 128256, "cuda:0")
    mistral = build("mistral-7b-shape", args.assets / "mistral-v3", 32768, "cuda:0")
    mistral_gpu1 = build("mistral-7b-shape", args.assets / "mistral-v3", 32768, "cuda:1", like=mistral) if n_gpu > 1 else None
    print(f"built models in {time.perf_counter() - t_start:.0f} s", flush=True)

    # A prompt of exactly --prompt-tokens tokens for the Llama-shaped model (its own tokenizer).
    tok = llama.tokenizer
    special = len(tok("a").input_ids) - len(tok("a", add_special_tokens=False).input_ids)  # BOS, if any
    long = tok(TEXT * 40, add_special_tokens=False).input_ids
    prompt = tok.decode(long[:args.prompt_tokens - special])
    res: dict = {"info": info, "prompt_tokens": {}, "greedy": {}, "bandwidth": {}, "adafuse": {}, "checks": {}}
    bw = copy_bandwidth("cuda:0")
    res["bandwidth"]["measured_copy_bytes_per_s"] = bw
    for lm in (llama, mistral):
        ids = lm.tokenizer(prompt, return_tensors="pt").input_ids.to(lm.device)
        res["prompt_tokens"][lm.name] = ids.shape[1]
        nbytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        res["bandwidth"][lm.name] = {"weight_bytes": nbytes, "ms_at_4.8TB/s": 1000 * nbytes / DATASHEET_BW,
                                     "ms_at_measured_copy_bw": 1000 * nbytes / bw}
        hf_greedy(lm, ids, 4)
        full = median([hf_greedy(lm, ids, args.new_tokens) for _ in range(args.reps)])
        one = median([hf_greedy(lm, ids, 1) for _ in range(args.reps)])
        res["greedy"][lm.name] = {"ms_per_token": 1000 * full / args.new_tokens,
                                  "decode_ms_per_token": 1000 * (full - one) / (args.new_tokens - 1),
                                  "prefill_ms": 1000 * one}
        res["greedy"][lm.name]["hf_static_compiled_ms_per_token"] = hf_static_greedy_ms(lm, ids, args.new_tokens, args.reps)
        res["checks"][lm.name] = check_fast_logits(lm, prompt)
        print(lm.name, res["greedy"][lm.name], res["checks"][lm.name], flush=True)
    # The fast path's own greedy (mode greedy through the engine): the per-forward cost it reaches.
    for lm in (llama, mistral):
        r = adafuse_run_greedy(lm, prompt, args.new_tokens, args.reps)
        res["greedy"][lm.name]["fast_engine_ms_per_token"] = r
        res["greedy"][lm.name]["graph_replay_ms"] = graph_step_ms(lm)
        # the anchor: what a user would run instead of the ensemble, the better of the two
        res["greedy"][lm.name]["optimized_ms_per_token"] = min(r, res["greedy"][lm.name]["hf_static_compiled_ms_per_token"])
        print(lm.name, "fast engine greedy ms/token", round(r, 2), "graph replay ms",
              res["greedy"][lm.name]["graph_replay_ms"], flush=True)

    taus = [0.7, 0.0, 1.5]
    one_gpu = [llama, mistral]
    setups = []
    in_turn = Execution(parallel="off")
    if not args.skip_eager_adafuse:
        setups.append(("1gpu_eager", one_gpu, Execution(fast="off", parallel="off"), taus, args.eager_reps))
    if not args.skip_nographs:
        setups.append(("1gpu_fast_nographs", one_gpu, Execution(cuda_graphs=False, parallel="off"), [0.7], args.reps))
    setups += [# the models in turn, then the default: a thread and a CUDA stream per model (parallel.py)
               ("1gpu_fast_sequential", one_gpu, in_turn, taus, args.reps),
               ("1gpu_fast", one_gpu, Execution(), taus, args.reps)]
    if mistral_gpu1 is not None:
        two_gpu = [llama, mistral_gpu1]
        setups += [("2gpu_eager_threads", two_gpu, Execution(fast="off"), [0.7], args.eager_reps),
                   ("2gpu_fast_sequential", two_gpu, in_turn, taus, args.reps),
                   ("2gpu_fast_threads", two_gpu, Execution(), taus, args.reps)]
    for label, lms, execution, setup_taus, reps in setups:
        for tau in setup_taus:
            r = adafuse_run(lms, prompt, tau, args.new_tokens, execution, reps)
            res["adafuse"][f"{label}_tau{tau}"] = r
            print(f"{label} tau {tau}: {r['ms_per_token']:.2f} ms/token, fwd/token "
                  f"{ {k: round(v, 2) for k, v in r['fwd_per_token'].items()} }, words/round "
                  f"{r['words_per_round']:.2f}, stop {r['stop_reason']}", flush=True)
    if mistral_gpu1 is not None:
        res["concurrency"] = concurrency(llama, mistral_gpu1, prompt, args.new_tokens)
        try:
            res["concurrency"]["processes"] = concurrency_processes(args.assets, prompt, args.new_tokens)
        except Exception as e:  # noqa: BLE001 - a failed side measurement must not lose the rest
            res["concurrency"]["processes"] = {"error": f"{type(e).__name__}: {e}"}
        print("concurrency", res["concurrency"], flush=True)
    a = res["adafuse"]
    res["checks"]["1gpu_threads_equal_sequential_text"] = all(
        a[f"1gpu_fast_tau{t}"]["text"] == a[f"1gpu_fast_sequential_tau{t}"]["text"] for t in taus)
    res["overlap"] = stream_overlap(one_gpu)
    print("overlap", json.dumps(res["overlap"]), flush=True)
    res["breakdown"] = {"sequential": round_breakdown(one_gpu, prompt, args.new_tokens)}
    print("breakdown", json.dumps(res["breakdown"]), flush=True)
    if "2gpu_fast_threads_tau0.7" in a:
        res["checks"]["threads_equal_sequential_text"] = all(
            a[f"2gpu_fast_threads_tau{t}"]["text"] == a[f"2gpu_fast_sequential_tau{t}"]["text"] for t in taus)
        res["checks"]["2gpu_equal_1gpu_fast_text"] = all(
            a[f"2gpu_fast_threads_tau{t}"]["text"] == a[f"1gpu_fast_tau{t}"]["text"] for t in taus)
    if "1gpu_eager_tau0.7" in a:
        res["checks"]["eager_equal_fast_text"] = {t: a[f"1gpu_eager_tau{t}"]["text"] == a[f"1gpu_fast_tau{t}"]["text"] for t in taus}
    res["checks"]["graphs_captured"] = {f"{lm.name}@{lm.device}": len(lm._fast_engine.graphs)
                                        for lm in [llama, mistral, mistral_gpu1] if getattr(lm, "_fast_engine", None)}
    res["seconds"] = time.perf_counter() - t_start
    report(res)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gpu.json").write_text(json.dumps(res, indent=1))


def stream_overlap(lms, reps: int = 50) -> dict | None:
    """How much of the GPU a second model can use while the first decodes: the time of the models'
    1-token decode graphs replayed one after the other on one stream, against each on a stream of
    its own at the same time (no host sync in between; wall time between device syncs); and each
    model's replay time per captured (row slot, rows, tokens) graph (graph_step_ms, CUDA events).
    Replays write scratch KV only (run after the decodes)."""
    graphs = [getattr(lm, "_fast_engine", None) and lm._fast_engine.graphs.get((0, 1, 1)) for lm in lms]
    if any(g is None or g.graph is None for g in graphs):
        return None
    dev = lms[0].device
    streams = [torch.cuda.Stream(dev) for _ in lms]

    def timed(fn) -> float:
        fn()
        torch.cuda.synchronize(dev)
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize(dev)
        return 1000 * (time.perf_counter() - t) / reps

    def one_stream():
        for _ in range(reps):
            for g in graphs:
                g.graph.replay()

    def own_streams():
        main = torch.cuda.current_stream(dev)
        for s in streams:
            s.wait_stream(main)
        for _ in range(reps):
            for g, s in zip(graphs, streams):
                with torch.cuda.stream(s):
                    g.graph.replay()
        for s in streams:
            main.wait_stream(s)

    out = {"one_stream_ms_per_pair": timed(one_stream), "own_streams_ms_per_pair": timed(own_streams)}
    for lm in lms:
        out[lm.name] = {str(k): graph_step_ms(lm, k, reps)
                        for k, g in sorted(lm._fast_engine.graphs.items()) if g.graph is not None}
    return out


def round_breakdown(lms, prompt: str, new: int) -> dict:
    """Where a round's time goes (issue 17): one AdaFuse decode (tau 0.7, M 3, B 1) on the fast path
    under cProfile, its host time split into waits for the GPU (the device-to-host copies that
    end each step), graph replay launches, the tokenizer (encode for scoring, decode of words) and
    the rest of the Python; ms per committed token. cProfile sees only the calling thread, so this
    is for the models in turn (parallel="off"); its own overhead inflates the Python share."""
    import cProfile
    import pstats
    cfg = DecodeConfig(tau=0.7, max_words=3, branches=1, max_new_tokens=new, execution=Execution(parallel="off"))
    adafuse.generate(lms, prompt, cfg)   # warm
    sync()
    prof = cProfile.Profile()
    prof.enable()
    trace = adafuse.generate(lms, prompt, cfg)
    sync()
    prof.disable()
    tokens = statistics.mean(trace.stats.new_tokens.values())
    parts = {"gpu_wait": 0.0, "graph_replay_launch": 0.0, "tokenizer": 0.0}
    total = 0.0
    for (file, _, name), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
        total += tottime
        if any(f"'{m}' of 'torch._C" in name for m in ("tolist", "item", "cpu", "synchronize")):
            parts["gpu_wait"] += tottime
        elif "replay" in name and ("CUDAGraph" in name or "graphs.py" in file):
            parts["graph_replay_launch"] += tottime
        elif "tokenizers.Tokenizer" in name:
            parts["tokenizer"] += tottime
    parts["other_python"] = total - sum(parts.values())
    out = {k: 1000 * v / tokens for k, v in parts.items()}
    out.update(total_ms_per_token=1000 * total / tokens,
               rounds=len(trace.rounds), forward_passes=dict(trace.stats.forward_passes), committed_tokens=tokens)
    return out


@torch.inference_mode()
def adafuse_run_greedy(lm, prompt: str, new: int, reps: int) -> float:
    cfg = DecodeConfig(mode="greedy", max_new_tokens=new)
    adafuse.generate([lm], prompt, cfg)
    runs = []
    for _ in range(reps):
        trace = adafuse.generate([lm], prompt, cfg)
        runs.append(1000 * trace.stats.seconds / max(1, sum(trace.stats.new_tokens.values())))
    return median(runs)


def concurrency(lm0, lm1, prompt: str, new: int) -> dict:
    """How much of two GPUs' work threads overlap: both models' fast greedy decoding (the engine's
    1-token graph replays and host syncs, the bulk of a round) alone, then in two threads at once.
    Efficiency = max(alone) / together; 1.0 is perfect overlap, which processes could not beat."""
    import threading
    cfg = DecodeConfig(mode="greedy", max_new_tokens=new)

    def one(lm):
        with torch.inference_mode():
            adafuse.generate([lm], prompt, cfg)

    alone = {}
    for lm in (lm0, lm1):
        one(lm)
        t = time.perf_counter()
        one(lm)
        alone[f"{lm.name}@{lm.device}"] = time.perf_counter() - t
    def both() -> float:
        threads = [threading.Thread(target=one, args=(lm,)) for lm in (lm0, lm1)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t

    together = both()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)   # hand the GIL over sooner to a thread back from the GPU
    together_fast_switch = both()
    sys.setswitchinterval(interval)
    return {"alone_s": alone, "threads_together_s": together, "sum_alone_s": sum(alone.values()),
            "threads_efficiency": max(alone.values()) / together,
            "threads_switchinterval_0.5ms_s": together_fast_switch,
            "threads_switchinterval_0.5ms_efficiency": max(alone.values()) / together_fast_switch}


def _process_worker(kind: str, assets: str, device: str, prompt: str, new: int, barrier, out) -> None:
    """One model in a process of its own: build, warm up, then time greedy decoding alone and
    (after a barrier shared with the other process) at the same time as the other."""
    name, sub, vocab = {"llama": ("llama-8b-shape", "smollm2", 128256),
                        "mistral": ("mistral-7b-shape", "mistral-v3", 32768)}[kind]
    lm = build(name, Path(assets) / sub, vocab, device)
    cfg = DecodeConfig(mode="greedy", max_new_tokens=new)
    for _ in range(2):
        adafuse.generate([lm], prompt, cfg)
    times = {}
    for phase in ("alone_llama", "alone_mistral", "together"):
        barrier.wait()
        if phase == "together" or phase == f"alone_{kind}":
            t = time.perf_counter()
            adafuse.generate([lm], prompt, cfg)
            times[phase] = (t, time.perf_counter())
        barrier.wait()
    out.put((kind, times))


def concurrency_processes(assets: Path, prompt: str, new: int) -> dict:
    """The same measurement as concurrency(), with each model in its own process (no shared GIL)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(k, str(assets), d, prompt, new, barrier, out))
             for k, d in (("llama", "cuda:0"), ("mistral", "cuda:1"))]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=400) for _ in procs)
    for p in procs:
        p.join()
    alone = {k: got[k][f"alone_{k}"][1] - got[k][f"alone_{k}"][0] for k in got}
    start_t = min(got[k]["together"][0] for k in got)
    together = max(got[k]["together"][1] for k in got) - start_t
    return {"alone_s": alone, "processes_together_s": together,
            "processes_efficiency": max(alone.values()) / together}


def report(res: dict) -> None:
    g, b, a = res["greedy"], res["bandwidth"], res["adafuse"]
    names = list(g)
    greedy_sum = sum(g[n]["optimized_ms_per_token"] for n in names)    # the anchor
    eager_sum = sum(g[n]["ms_per_token"] for n in names)
    bw_sum = sum(b[n]["ms_at_4.8TB/s"] for n in names)
    print("\n=== summary (random weights; bf16; batch 1; prompt tokens "
          f"{res['prompt_tokens']}; {res['info']['new_tokens']} new tokens; prefill included) ===")
    print(f"device: {res['info']['gpus']}; torch {res['info']['torch']}; transformers {res['info']['transformers']}")
    print(f"measured copy bandwidth: {b['measured_copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write)")
    for n in names:
        print(f"{n:18s} optimized greedy {g[n]['optimized_ms_per_token']:6.2f} ms/token (fast engine "
              f"{g[n]['fast_engine_ms_per_token']:.2f}, graph replay {g[n]['graph_replay_ms'] or float('nan'):.2f}; "
              f"HF static cache + compile {g[n]['hf_static_compiled_ms_per_token']:.2f}); HF eager "
              f"{g[n]['ms_per_token']:.2f} (decode only {g[n]['decode_ms_per_token']:.2f}, prefill "
              f"{g[n]['prefill_ms']:.1f} ms); bandwidth limit {b[n]['ms_at_4.8TB/s']:.2f} ms "
              f"(at measured copy bw {b[n]['ms_at_measured_copy_bw']:.2f})")
    print(f"sum of optimized greedy (the anchor): {greedy_sum:.2f} ms/token; of HF eager greedy: "
          f"{eager_sum:.2f}; of bandwidth limits: {bw_sum:.2f} ms")
    print(f"{'setup':32s} {'ms/tok':>8s} {'/greedy':>8s} {'/bw':>6s} {'/eager':>7s}  fwd per committed token   words/round")
    for k, r in a.items():
        fwd = "  ".join(f"{v:.2f}" for v in r["fwd_per_token"].values())
        print(f"{k:32s} {r['ms_per_token']:8.2f} {r['ms_per_token'] / greedy_sum:8.3f} "
              f"{r['ms_per_token'] / bw_sum:6.2f} {r['ms_per_token'] / eager_sum:7.3f}  {fwd:22s}  {r['words_per_round']:.2f}")
    # issue 17's bars: against optimized greedy and the bandwidth limit
    for key, bar, ref, what in [("1gpu_fast_tau0.7", 1.0, greedy_sum, "x sum optimized greedy (1 GPU)"),
                                ("2gpu_fast_threads_tau0.7", 0.6, greedy_sum, "x sum optimized greedy (2 GPUs)"),
                                ("1gpu_fast_tau0.7", 2.0, bw_sum, "x sum bw limits (1 GPU)"),
                                ("2gpu_fast_threads_tau0.7", 2.0, bw_sum, "x sum bw limits (2 GPUs)")]:
        if key in a:
            ratio = a[key]["ms_per_token"] / ref
            print(f"bar: {key} {ratio:.3f} {what} <= {bar}: {'HOLDS' if ratio <= bar else 'FAILS'}")
    print("checks:", json.dumps(res["checks"]))
    if "concurrency" in res:
        print("concurrency (fast greedy, 2 GPUs):", json.dumps(res["concurrency"]))
    print(f"total {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
