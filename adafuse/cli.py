"""`python -m adafuse generate|models|eval|cases`."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .config import DecodeConfig, add_execution_arguments, execution_from_arguments, unescape_stop
from .errors import AdafuseError, InputError
from .models import DEFAULT_PAIR, PRESETS, cache_dir, converted_dir, is_cached
from .stops import END_MARKERS

# Subcommands that live in their own packages; imported only when used.
DELEGATED = {"eval": "adafuse.eval.cli", "cases": "adafuse.cases.cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        try:
            module = importlib.import_module(DELEGATED[argv[0]])
        except ModuleNotFoundError:
            print(f"adafuse: '{argv[0]}' is not available in this version", file=sys.stderr)
            return 2
        return module.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except AdafuseError as e:
        print(f"adafuse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adafuse: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adafuse",
                                description="Adaptive word-level ensemble decoding of LLMs (AdaFuse).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{generate,models,eval,cases}")

    g = sub.add_parser("generate", help="decode one prompt and show every round")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt text")
    src.add_argument("--prompt-file", type=Path, help="read the prompt from this file ('-' for stdin)")
    g.add_argument("--models", default=",".join(DEFAULT_PAIR),
                   help=f"comma-separated presets, HF ids or local dirs (default: {','.join(DEFAULT_PAIR)})")
    g.add_argument("--mode", default="adafuse", choices=["adafuse", "fixed", "greedy", "unite", "gac"])
    g.add_argument("--tau", type=float, default=0.7, help="margin threshold in [0, 1] (default 0.7)")
    g.add_argument("--max-words", type=int, default=3, help="M: most words per span (default 3)")
    g.add_argument("--branches", type=int, default=1, help="B: branches at an uncertain word (default 1)")
    g.add_argument("--fixed-words", type=int, default=1, help="L: words per round in fixed mode (default 1)")
    g.add_argument("--top-k", type=int, default=10,
                   help="unite: each model's top-k tokens in the union (default 10, the UniTE paper's)")
    g.add_argument("--max-new-tokens", type=int, default=64,
                   help="output bound, counted in each model's own tokens (default 64)")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable), e.g. '\\nQuestion:'")
    g.add_argument("--end-marker", default=DecodeConfig.end_marker, choices=list(END_MARKERS),
                   help="how a span that reaches a stop string is scored: up to and with the stop string, "
                        "or up to it plus each model's EOS (default stop; docs/ENGINE.md)")
    g.add_argument("--prompt-format", default="raw", choices=["raw", "chat"])
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    g.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default auto)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    add_execution_arguments(g)
    g.add_argument("--json", action="store_true", help="print the trace as JSON on stdout")
    g.set_defaults(run=_generate)

    m = sub.add_parser("models", help="list presets and what is cached")
    m.set_defaults(run=_models)
    for name, module in DELEGATED.items():
        sub.add_parser(name, help=f"see python -m adafuse {name} --help", add_help=False)
    return p


def _generate(args) -> int:
    from .decode import generate
    from .models import load_models

    prompt = _read_prompt(args)
    stops = tuple(unescape_stop(s) for s in args.stop)
    cfg = DecodeConfig(mode=args.mode, tau=args.tau, max_words=args.max_words, branches=args.branches,
                       fixed_words=args.fixed_words, top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                       prompt_format=args.prompt_format, stop=stops,
                       end_marker=args.end_marker,
                       execution=execution_from_arguments(args)).check_tau_range().validated()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if cfg.mode == "greedy" and len(names) != 1:
        raise InputError(f"greedy mode decodes with one model: pass one with --models (got {','.join(names)})")
    if not prompt.strip():
        raise InputError("the prompt is empty")
    lms = load_models(names, device=args.device, dtype=args.dtype,   # conversion progress: stderr
                      trust_remote_code=args.trust_remote_code)
    trace = generate(lms, prompt, cfg)
    if args.json:
        print(trace.to_json(indent=2))
        return 0
    print(trace.bracketed())
    s = trace.stats
    out_tokens = max(s.new_tokens.values()) or 1
    print()
    n = len(trace.rounds)
    print(f"mode {trace.mode}, {n} round{'s' * (n != 1)}, {sum(r.branched for r in trace.rounds)} branched, "
          f"stop: {s.stop_reason}, {s.seconds:.2f} s ({1000 * s.seconds / out_tokens:.0f} ms per token)")
    for name in trace.models:
        print(f"  {name}: {s.new_tokens[name]} tokens, {s.forward_passes[name]} forward passes")
    return 0


def _read_prompt(args) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        if str(args.prompt_file) == "-":
            return sys.stdin.read()
        return args.prompt_file.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read the prompt file {args.prompt_file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"the prompt file {args.prompt_file} is not UTF-8 text") from None


def _models(args) -> int:
    print(f"cache: {cache_dir()}  (set ADAFUSE_CACHE to move it)")
    width = max(len(n) for n in PRESETS)
    for name, preset in PRESETS.items():
        if preset.embedded:
            state = f"converted, {converted_dir(name)}" if is_cached(name) else "embedded, converts on first use"
        else:
            state = f"hub id {preset.hf_id}: {'in the HF cache' if _in_hf_cache(preset.hf_id) else 'not cached'}"
        print(f"{name:<{width}}  {state}\n{'':<{width}}  {preset.description}")
    return 0


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir
        return any(r.repo_id == repo_id for r in scan_cache_dir().repos)
    except Exception:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
