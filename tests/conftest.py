"""Shared fixtures: the real embedded model pair, loaded once per test session (CPU)."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/cases_run.py

import adafuse  # noqa: E402


@pytest.fixture(scope="session")
def lms():
    """[SmolLM2-135M-Instruct, Gemma-3-270M]: different tokenizers (byte-level BPE, SentencePiece)."""
    return adafuse.load_models(list(adafuse.DEFAULT_PAIR), device="cpu")


@pytest.fixture(scope="session")
def smol(lms):
    return lms[0]


@pytest.fixture(scope="session")
def gemma(lms):
    return lms[1]


@pytest.fixture(scope="session")
def run_dir(lms, tmp_path_factory):
    """The --out folder of one tiny eval run the harness makes on the real pair (tests/cases_run.py),
    shared by the cases tests."""
    from cases_run import eval_run

    return eval_run(lms, tmp_path_factory.getbasetemp())
