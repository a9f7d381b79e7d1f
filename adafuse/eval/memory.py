"""What `--batch-items N` will need in memory, said before a run starts rather than learnt from the
OOM killer: each item in flight holds its own KV caches, and at GSM8K's 1,450-token prompts with
B = 3, eight items in two processes outgrew a 24 GiB machine.

Per item in flight and per model, at the longest prompt plus the token budget (and the buffers'
headroom), the estimate counts one cache for the decoding state, one for its thread's prompt cache,
and one per row of a scoring forward, which copies the shared prefix into each row: up to one row
per candidate span, K models x B branches.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import kv

GIB = 1024 ** 3
PROMPTS_MEASURED = 256      # the longest prompt among a task's first items: tokenizing is cheap, not free


@dataclass
class BatchMemory:
    per_item: int               # bytes one item in flight needs for its caches, all models
    processes: int              # processes sharing this memory
    available: int | None       # bytes free for them (None: unknown)

    def need(self, batch_items: int) -> int:
        return self.processes * batch_items * self.per_item

    def fits(self, budget: float = 0.8) -> int | None:
        """The most items in flight per process that stay within `budget` of what is available."""
        if self.available is None:
            return None
        return int(budget * self.available // (self.processes * self.per_item))


def longest_prompt(lm, tasks) -> int:
    return max((len(lm.tokenizer(t.prompt(item)).input_ids) for t in tasks for item in t.items[:PROMPTS_MEASURED]),
               default=0)


def per_item_bytes(lms, tasks, methods) -> int:
    branches = max((m.branches for m in methods if m.mode == "adafuse"), default=1)
    rows = len(lms) * branches
    tokens = max(t.spec.max_new_tokens for t in tasks) + kv.HEADROOM
    return sum(kv.bytes_per_token(lm) * (longest_prompt(lm, tasks) + tokens) * (2 + rows) for lm in lms)


def available_bytes(device: str) -> int | None:
    """Free memory of `device`: the GPU's free memory, or the machine's MemAvailable (Linux)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0] if torch.cuda.is_available() else None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def batch_warning(lms, tasks, methods, batch_items: int, processes: int = 1) -> str | None:
    """A warning when `batch_items` items in flight per process would not fit, else None. The
    memory is that of the first model's device (the CPU, or its GPU), shared by `processes`
    processes of this machine (cli.processes_on)."""
    if batch_items < 2 or not lms:
        return None
    device = str(lms[0].device)
    mem = BatchMemory(per_item_bytes(lms, tasks, methods), processes, available_bytes(device))
    most = mem.fits()
    if most is None or batch_items <= most:
        return None
    procs = f" x {mem.processes} processes" if mem.processes > 1 else ""
    advice = (f"--batch-items {most} stays within 80 %" if most >= 1 else
              "even --batch-items 1 may not fit: fewer processes or a smaller --max-new-tokens")
    return (f"--batch-items {batch_items} may not fit in memory: about {mem.per_item / GIB:.2f} GiB of KV caches "
            f"per item in flight ({batch_items} items{procs} = {mem.need(batch_items) / GIB:.1f} GiB) against "
            f"{mem.available / GIB:.1f} GiB available on {device}; {advice}")
