"""CPU speed of AdaFuse against the two models' own greedy decoding, side by side in one process.

    python scripts/bench_cpu.py [--n 20] [--max-new-tokens 32] [--data-dir ../shared/bench]

Uses 20 NQ 5-shot prompts (../shared/bench/nq_dev.jsonl + nq_prompt.txt when present, else a
built-in fallback set) on the embedded pair. For every prompt it runs, in alternating order,
HF `generate` (greedy, KV cache) for each model and AdaFuse (tau 0.7, M 3, B 1), and prints:
  ratio = AdaFuse seconds per committed output token / (sum of the two models' greedy seconds
          per output token), as the median of per-prompt ratios and as a ratio of totals;
  forward passes per output token per model.
No stop strings, so every run produces up to --max-new-tokens tokens (EOS may end it earlier).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import adafuse  # noqa: E402
from adafuse import DecodeConfig  # noqa: E402

FALLBACK_QUESTIONS = ["who wrote the novel pride and prejudice", "what is the capital of australia",
                      "when did the first man land on the moon", "who painted the mona lisa",
                      "what is the largest planet in the solar system"]


def nq_prompts(data_dir: Path, n: int) -> tuple[list[str], str]:
    items, prompt_file = data_dir / "nq_dev.jsonl", data_dir / "nq_prompt.txt"
    if items.exists() and prompt_file.exists():
        shots = prompt_file.read_text().strip()
        questions = [json.loads(line)["question"] for line in items.open() if line.strip()][:n]
        return [f"{shots}\n\nQuestion: {q}\nAnswer:" for q in questions], f"{items} + {prompt_file.name}"
    shots = ("Question: who sang the song hey jude\nAnswer: The Beatles\n\n"
             "Question: what is the boiling point of water in celsius\nAnswer: 100\n\n"
             "Question: who was the first president of the united states\nAnswer: George Washington\n\n"
             "Question: what language is spoken in brazil\nAnswer: Portuguese\n\n"
             "Question: how many legs does a spider have\nAnswer: eight")
    qs = (FALLBACK_QUESTIONS * (n // len(FALLBACK_QUESTIONS) + 1))[:n]
    return [f"{shots}\n\nQuestion: {q}\nAnswer:" for q in qs], "built-in fallback prompts (no ../shared/bench)"


@torch.inference_mode()
def hf_greedy(lm, prompt: str, max_new_tokens: int) -> tuple[float, int]:
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids.to(lm.device)
    t = time.perf_counter()
    out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, pad_token_id=lm.eos_id)
    seconds = time.perf_counter() - t
    return seconds, out.shape[1] - ids.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bench")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m",
                    help="the pair the documented figures were measured on")
    args = ap.parse_args()

    lms = adafuse.load_models(args.models.split(","), device=args.device)
    prompts, source = nq_prompts(args.data_dir, args.n)
    cfg = DecodeConfig(tau=0.7, max_words=3, branches=1, max_new_tokens=args.max_new_tokens)
    names = [lm.name for lm in lms]
    adafuse.generate(lms, prompts[0], cfg)  # warm-up (allocator, lazy inits); not counted
    for lm in lms:
        hf_greedy(lm, prompts[0], 4)

    ratios, ada_s, ada_tok, greedy_s = [], 0.0, 0, {n: [0.0, 0] for n in names}
    fwd = {n: 0 for n in names}
    words = []
    for i, prompt in enumerate(prompts):
        runs = ["ada"] + names if i % 2 == 0 else names[::-1] + ["ada"]  # alternate order: fair under drift
        per_token = {}
        for run in runs:
            if run == "ada":
                trace = adafuse.generate(lms, prompt, cfg)
                tokens = statistics.mean(trace.stats.new_tokens.values())
                per_token["ada"] = trace.stats.seconds / tokens
                ada_s += trace.stats.seconds
                ada_tok += tokens
                for n in names:
                    fwd[n] += trace.stats.forward_passes[n] / tokens
                words += trace.words_per_round()
            else:
                lm = lms[names.index(run)]
                seconds, tokens = hf_greedy(lm, prompt, args.max_new_tokens)
                per_token[run] = seconds / tokens
                greedy_s[run][0] += seconds
                greedy_s[run][1] += tokens
        ratios.append(per_token["ada"] / sum(per_token[n] for n in names))
        print(f"prompt {i + 1:2d}: ratio {ratios[-1]:.3f}  ada {1000 * per_token['ada']:.1f} ms/tok  " +
              "  ".join(f"{n} {1000 * per_token[n]:.1f} ms/tok" for n in names), flush=True)

    total_sum = sum(greedy_s[n][0] / greedy_s[n][1] for n in names)
    print()
    print(f"prompts: {len(prompts)} from {source}; max_new_tokens {args.max_new_tokens}; device {args.device}; "
          f"torch threads {torch.get_num_threads()}")
    for n in names:
        print(f"greedy {n}: {1000 * greedy_s[n][0] / greedy_s[n][1]:.1f} ms per token")
    print(f"adafuse (tau 0.7, M 3, B 1): {1000 * ada_s / ada_tok:.1f} ms per committed token")
    print(f"ratio adafuse / sum of greedy, median of per-prompt ratios: {statistics.median(ratios):.3f}")
    print(f"ratio adafuse / sum of greedy, totals: {(ada_s / ada_tok) / total_sum:.3f}  (bar: <= 1.5)")
    for n in names:
        print(f"forward passes per output token, {n}: {fwd[n] / len(prompts):.2f}")
    dist = [words.count(k) / len(words) for k in (1, 2, 3)]
    print(f"words per round: 1 {100 * dist[0]:.1f}%  2 {100 * dist[1]:.1f}%  3 {100 * dist[2]:.1f}%")


if __name__ == "__main__":
    main()
