"""GPU check of the fast path through the real loading path (not a benchmark; takes ~1 minute).

    python3 scripts/check_gpu_fast_path.py [--assets .gpu_assets]

Saves two tiny random-weight Llamas (SmolLM2 tokenizer from --assets, seeds 0 and 1) to temporary
folders, loads them with `adafuse.load_models(device="auto")` (one per GPU when two are visible,
both on one GPU otherwise), and checks that the fast path is the one used, that the models run
concurrently (a thread and a CUDA stream each, adafuse/parallel.py) and that concurrent and
sequential rounds give the same text, for B = 1 and B = 3; and that a long prompt's prefill
through graph chunks (fast.FastEngine._prefill) gives the eager prefill's next-token log-probs up
to bf16 rounding, and then the same greedy words. Exits non-zero on a failed check.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import adafuse  # noqa: E402
from adafuse import DecodeConfig, Execution, fast, parallel  # noqa: E402
from adafuse.state import start  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[1] / ".gpu_assets")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("check_gpu_fast_path.py needs a CUDA GPU")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig
    tok = AutoTokenizer.from_pretrained(str(args.assets / "smollm2"))
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=49152, max_position_embeddings=4096,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    failures = []
    with tempfile.TemporaryDirectory() as root:
        folders = [f"{root}/m{seed}" for seed in (0, 1)]
        for seed, folder in enumerate(folders):
            torch.manual_seed(seed)
            AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(folder)
            tok.save_pretrained(folder)
        lms = adafuse.load_models(folders, device="auto")
        print("devices", [str(lm.device) for lm in lms], "supported", [fast.supported(lm) for lm in lms])
        probes = [start(lm, f"probe{i}", "Hello there", "raw") for i, lm in enumerate(lms)]
        if any(type(p.cache) is not fast.FastCache for p in probes):
            failures.append("the fast path is not used for a model loaded on a GPU")
        if not parallel.use_threads([p.lm.device for p in probes], all(type(p.cache) is fast.FastCache for p in probes)):
            failures.append("the models do not run concurrently")
        del probes   # they own the models' fast engines
        prompt = "The history of the city begins with a small settlement on the river, where"
        for tau, branches in ((0.7, 1), (0.0, 1), (0.5, 3)):
            cfg_d = dict(tau=tau, branches=branches, max_new_tokens=32)
            concurrent = adafuse.generate(lms, prompt, DecodeConfig(**cfg_d))
            sequential = adafuse.generate(lms, prompt, DecodeConfig(**cfg_d, execution=Execution(parallel="off")))
            same = concurrent.text == sequential.text
            print(f"tau {tau} B {branches}: concurrent == sequential {same}; forwards "
                  f"{concurrent.stats.forward_passes}")
            if not same:
                failures.append(f"tau {tau} B {branches}: concurrent and sequential texts differ")
        failures += check_prefill(lms[0])
        failures += check_graphs_own_buffers(lms[0])
    print("FAILED: " + "; ".join(failures) if failures else "OK")
    return 1 if failures else 0


def check_prefill(lm) -> list[str]:
    """Prompts of 700 and 1,100 tokens (a 512 chunk and a padded 256 one; two 512 chunks and a
    64-token decode graph) prefilled through graphs against the eager fast path."""
    failures = []
    words = "the river city grew around a port with a cathedral and a university and old bridges".split()
    for n in (700, 1100):
        prompt = " ".join(words[i % len(words)] for i in range(n))
        prompt = lm.tokenizer.decode(lm.tokenizer(prompt, add_special_tokens=False).input_ids[:n - 1])
        def prefill_and_decode(execution: Execution):
            state = start(lm, "prefill", prompt, "raw", execution=execution)
            logprobs, n_ids = state.next_logprobs.float(), len(state.ids)
            del state   # it owns the model's fast engine
            cfg = DecodeConfig(mode="greedy", max_new_tokens=8, execution=execution)
            return logprobs, n_ids, adafuse.generate([lm], prompt, cfg).text

        (a, n_ids, text_a), (b, _, text_b) = (prefill_and_decode(Execution(cuda_graphs=graphs)) for graphs in (True, False))
        finite = torch.isfinite(b)
        err = float((a[finite].exp() - b[finite].exp()).norm() / b[finite].exp().norm())
        ok = err < 0.05 and int(a.argmax()) == int(b.argmax())
        print(f"prefill of {n_ids} tokens through graphs: prob rel err {err:.2e} vs eager, same argmax "
              f"{int(a.argmax()) == int(b.argmax())}, same 8 greedy tokens {text_a == text_b}")
        if not ok:
            failures.append(f"prefill of {n_ids} tokens through graphs differs from the eager prefill")
    return failures


def check_graphs_own_buffers(lm) -> list[str]:
    """Captured graphs survive a clear of cuBLAS's workspaces (what torch.compile's CUDA graphs do
    around each recording) followed by allocations that reuse the freed memory: the same greedy
    text and next-token log-probs before and after."""
    prompt = "The history of the city begins with a small settlement on the river, where traders met"
    cfg = DecodeConfig(mode="greedy", max_new_tokens=24)

    def decode():
        trace = adafuse.generate([lm], prompt, cfg)
        state = start(lm, "own", prompt, "raw")
        return trace.text, state.next_logprobs.clone()

    before = decode()
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
    torch.cuda.empty_cache()
    junk = [torch.full((1 << 22,), float("nan"), device=lm.device) for _ in range(32)]   # reuse freed memory
    after = decode()
    del junk
    same = before[0] == after[0] and torch.equal(before[1], after[1])
    print(f"graphs after a cuBLAS workspace clear: same text and log-probs {same}")
    return [] if same else ["graphs changed after a cuBLAS workspace clear (a buffer they use was freed)"]


if __name__ == "__main__":
    sys.exit(main())
