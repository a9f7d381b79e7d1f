"""Why do a few GSM8K answers computed on a GPU differ from the CPU's? (issue 15, item 4)

For each chosen item, on each device, this prints every model's next-word distribution at the
start of the answer (top 3 tokens and the margin p1 - p2), computed three ways: one plain
transformers forward over the whole prompt, the engine's `start` from scratch, and `start` after
the previous item through a PromptCache (the harness's path). Then it decodes the item with AdaFuse
at each B, fast path on and off, prompt cache on and off, `--repeats` times, and prints the first
round's proposals and the answer. CPU and GPU run in the same process on the same weights, so a
difference between them is the device's arithmetic or a device-only path, nothing else.

  python scripts/check_gpu_item.py --task gsm8k --items 107,169,199 --devices cpu,cuda --out r.jsonl
Start several at once to see it under load ("many processes").
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import adafuse
from adafuse.eval import tasks as tasks_mod


def top3(lm, logprobs: torch.Tensor) -> dict:
    probs, ids = logprobs.float().exp().topk(3)
    probs = probs.tolist()
    return {"top": [(lm.tokenizer.decode([i]), round(p, 4)) for i, p in zip(ids.tolist(), probs)],
            "margin": round(probs[0] - probs[1], 4)}


@torch.inference_mode()
def next_word(lm, prompt: str, previous: str | None) -> dict:
    """The model's distribution after the prompt, three ways."""
    ids = lm.tokenizer(prompt).input_ids
    logits = lm.model(torch.tensor([ids], device=lm.device), logits_to_keep=1).logits[0, -1]
    out = {"tokens": len(ids), "hf": top3(lm, torch.log_softmax(logits.float(), -1))}
    out["start"] = top3(lm, adafuse.state.start(lm, lm.name, prompt, "raw").next_logprobs)
    if previous is not None:
        cache = adafuse.PromptCache()
        adafuse.state.start(lm, lm.name, previous, "raw", cache)
        state = adafuse.state.start(lm, lm.name, prompt, "raw", cache)
        out["start+cache"] = top3(lm, state.next_logprobs)
        out["cache_reused"] = cache.reused_tokens
    return out


def decode(lms, task, prompt: str, previous: str | None, branches: int, prompt_cache: bool,
           execution: adafuse.Execution) -> dict:
    cfg = adafuse.DecodeConfig(tau=0.7, max_words=3, branches=branches, max_new_tokens=128,
                               stop=tuple(task.spec.stop), execution=execution)
    cache = None
    if prompt_cache:
        cache = adafuse.PromptCache()
        if previous is not None:   # as the harness: the previous item's prompt is in the cache
            adafuse.state.start(lms[0], lms[0].name, previous, "raw", cache, execution)
            adafuse.state.start(lms[1], lms[1].name, previous, "raw", cache, execution)
    t0 = time.perf_counter()
    trace = adafuse.generate(lms, prompt, cfg, prompt_cache=cache)
    first = trace.rounds[0]
    return {"seconds": round(time.perf_counter() - t0, 2), "answer": task.answer(trace.text),
            "text": trace.text[:120], "chosen0": first.chosen,
            "proposals0": {p.model: list(zip(p.words, [round(m, 4) for m in p.margins]))
                           for p in first.proposals}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--items", default="107,169,199", help="1-based lines of the task's file")
    p.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--branches", default="1,2")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", required=True, help="JSONL, one line per measurement")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", 4)))
    task = tasks_mod.load_task(args.task)
    by_line = {it.line: it for it in task.items}
    lines = [int(x) for x in args.items.split(",")]
    print("torch", torch.__version__, "tf32", torch.backends.cuda.matmul.allow_tf32,
          torch.get_float32_matmul_precision(), flush=True)
    with open(args.out, "a") as f:
        def emit(row):
            row["pid"] = os.getpid()
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row)[:400], flush=True)

        for device in args.devices.split(","):
            lms = adafuse.load_models(args.models.split(","), device=device, dtype="float32")
            for lm in lms:
                emit({"device": device, "model": lm.name, "attn": lm.model.config._attn_implementation})
            for line in lines:
                prompt = task.prompt(by_line[line])
                previous = task.prompt(by_line[line - 1]) if line - 1 in by_line else None
                for lm in lms:
                    emit({"device": device, "item": line, "model": lm.name, **next_word(lm, prompt, previous)})
                for fast in ("on", "off"):
                    execution = adafuse.Execution(fast="auto" if fast == "on" else "off")
                    for b in [int(x) for x in args.branches.split(",")]:
                        for prompt_cache in (True, False):
                            for rep in range(args.repeats):
                                emit({"device": device, "item": line, "B": b, "fast": fast,
                                      "prompt_cache": prompt_cache, "repeat": rep,
                                      **decode(lms, task, prompt, previous, b, prompt_cache, execution)})
            del lms


if __name__ == "__main__":
    main()
