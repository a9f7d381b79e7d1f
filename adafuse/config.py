"""Decoding settings and their validation (shared by the library, CLI, app and eval harness)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import InputError
from .stops import END_MARKERS

MODES = ("adafuse", "fixed", "greedy", "unite", "gac")
PROMPT_FORMATS = ("raw", "chat")

# Upper bounds that keep one request from running away; far above anything useful.
MAX_WORDS_LIMIT = 32
MAX_BRANCHES_LIMIT = 16
MAX_NEW_TOKENS_LIMIT = 8192
MAX_STOP_STRINGS = 16
MAX_TOP_K = 100


SWITCHES = ("auto", "on", "off")


@dataclass(frozen=True)
class Execution:
    """How the engine runs a decode, never what it decodes: every choice here gives the same text
    (the fast path's kernels may differ from transformers' in the last bits; tests/test_fast.py).
    "auto" is the best choice for the hardware at hand; the others are for tests and measurement."""
    fast: str = "auto"          # the static-KV fast path (fast.py): auto = on CUDA for the model
                                # families it covers; on = also on CPU (its eager form); off = never
    cuda_graphs: bool = True    # fast path on CUDA: replay forwards as CUDA graphs (False: eagerly)
    compile: bool = True        # fast path on CUDA: fuse its elementwise ops with torch.compile
    parallel: str = "auto"      # each model's share of a round on a thread of its own (parallel.py):
                                # auto = on GPUs where it pays; on = always (CPU too); off = in turn

    def validated(self) -> "Execution":
        for name in ("fast", "parallel"):
            if getattr(self, name) not in SWITCHES:
                raise InputError(f"{name} must be one of {', '.join(SWITCHES)}, got {getattr(self, name)!r}")
        for name in ("cuda_graphs", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        return self


@dataclass(frozen=True)
class DecodeConfig:
    mode: str = "adafuse"          # adafuse | fixed | greedy | unite | gac
    tau: float = 0.7               # margin threshold p(1) - p(2) at a word start
    max_words: int = 3             # M: most words in one model's span per round
    branches: int = 1              # B: alternative words tried at an uncertain word start
    fixed_words: int = 1           # L: words per round in `fixed` mode
    max_new_tokens: int = 64       # counted in each model's own tokens (see README)
    prompt_format: str = "raw"     # raw | chat
    stop: tuple[str, ...] = field(default_factory=tuple)
    # How a span that reaches a stop string is scored: its text up to the stop plus the stop
    # string ("stop") or plus each model's EOS ("eos"). See adafuse/stops.py, docs/ENGINE.md.
    end_marker: str = "stop"
    top_k: int = 10                # unite: each model's top-k tokens in the union (the paper's k)
    execution: Execution = field(default_factory=Execution)   # how it runs, not what it decodes

    def validated(self) -> "DecodeConfig":
        """Return a copy with normalised types, or raise InputError naming the bad value."""
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.end_marker not in END_MARKERS:
            raise InputError(f"unknown end marker {self.end_marker!r}; choose {' or '.join(END_MARKERS)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise InputError(f"unknown prompt format {self.prompt_format!r}; choose raw or chat")
        tau = _number("tau", self.tau)
        # The library accepts tau > 1 ("never confident": every round branches at its first
        # word, the ablation behind invariant (c)); user-facing entry points call
        # check_tau_range() and refuse it.
        if tau < 0.0:
            raise InputError(f"tau must be in [0, 1], got {self.tau!r}")
        max_words = _integer("max_words (M)", self.max_words, 1, MAX_WORDS_LIMIT)
        branches = _integer("branches (B)", self.branches, 1, MAX_BRANCHES_LIMIT)
        fixed_words = _integer("fixed_words (L)", self.fixed_words, 1, MAX_WORDS_LIMIT)
        max_new_tokens = _integer("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_LIMIT)
        top_k = _integer("top_k", self.top_k, 1, MAX_TOP_K)
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        stop = tuple(stop or ())
        if len(stop) > MAX_STOP_STRINGS:
            raise InputError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(stop)}")
        for s in stop:
            if not isinstance(s, str) or s == "":
                raise InputError(f"stop strings must be non-empty text, got {s!r}")
        if not isinstance(self.execution, Execution):
            raise InputError(f"execution must be an Execution, got {self.execution!r}")
        return DecodeConfig(self.mode, tau, max_words, branches, fixed_words, max_new_tokens,
                            self.prompt_format, stop, self.end_marker, top_k, self.execution.validated())

    def check_tau_range(self) -> "DecodeConfig":
        """User-facing entry points (CLI, app) accept tau only in [0, 1]."""
        if not 0.0 <= _number("tau", self.tau) <= 1.0:
            raise InputError(f"tau must be in [0, 1], got {self.tau!r}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


def add_execution_arguments(parser) -> None:
    """The command lines' flags for Execution (generate and eval)."""
    parser.add_argument("--fast-path", choices=SWITCHES, default="auto",
                        help="the static-KV fast path with CUDA graphs (default auto: on CUDA for the model "
                             "families it covers; on: also on CPU, eagerly; off: transformers' own forward)")
    parser.add_argument("--parallel", choices=SWITCHES, default="auto",
                        help="each model's share of a round on a thread of its own (default auto: on GPUs "
                             "where it pays; off: the models in turn). The text is the same either way")


def execution_from_arguments(args) -> Execution:
    return Execution(fast=args.fast_path, parallel=args.parallel)


def unescape_stop(text: str) -> str:
    """A stop string typed on a command line: "\\n" and "\\t" mean newline and tab; other text,
    non-ASCII included, is taken as it is."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _number(name: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(out) or math.isinf(out):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return out


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if math.isnan(as_float) or as_float != int(as_float):
        raise InputError(f"{name} must be an integer, got {value!r}")
    out = int(as_float)
    if not low <= out <= high:
        raise InputError(f"{name} must be between {low} and {high}, got {out}")
    return out
