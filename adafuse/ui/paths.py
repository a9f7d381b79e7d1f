"""Which server folders a visitor may open by path, and how paths appear in what a visitor sees.

Opening folders by path is for a local user: it is off unless the operator names the folder
(ADAFUSE_RUNS_ROOT), so a public deployment cannot be probed for which files exist. Messages
never show where anything lies on the server: paths under the runs root read relative to it,
uploads by their file name.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

RUNS_ROOT_ENV = "ADAFUSE_RUNS_ROOT"


def runs_root() -> Path | None:
    """The folder under which the Cases view opens runs by path; None (off) unless set."""
    root = os.environ.get(RUNS_ROOT_ENV, "").strip()
    return Path(root).expanduser().resolve() if root else None


def _upload_folder() -> str:
    # where Gradio keeps uploads: <folder>/<hash>/<file name> (gradio.utils.get_upload_folder)
    return os.environ.get("GRADIO_TEMP_DIR") or str((Path(tempfile.gettempdir()) / "gradio").resolve())


def hide_paths(text: str) -> str:
    """`text` with the server's folders cut from its paths: the runs root, Gradio's uploads, this
    project and the working directory; the home directory reads `~` (the closest folder wins)."""
    text = re.sub(re.escape(_upload_folder()) + r"/[^/\s'\"]+/", "", text)
    cut = {str(f): "" for f in (runs_root(), Path(__file__).resolve().parents[2], Path.cwd()) if f}
    cut[str(Path.home())] = "~/"
    for folder in sorted((f for f in cut if f != os.sep), key=len, reverse=True):
        text = text.replace(folder + os.sep, cut[folder])
        # the folder itself, not a longer name that starts with it
        text = re.sub(re.escape(folder) + r"(?![\w.-])", cut[folder].rstrip("/") or ".", text)
    return text
