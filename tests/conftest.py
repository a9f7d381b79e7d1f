"""Shared fixtures: the real embedded test pair, loaded once per test session (CPU).

The tests decode with SmolLM2-135M + Gemma-3-270M, the two smallest presets and two tokenizer
families; the default pair (Gemma + Qwen2.5-Coder-0.5B, 4x the compute) is loaded only by the
tests of the defaults (the CLI's, the app's)."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/cases_run.py

import adafuse  # noqa: E402

TEST_PAIR = ("smollm2-135m-instruct", "gemma3-270m")


@pytest.fixture(scope="session")
def lms():
    """[SmolLM2-135M-Instruct, Gemma-3-270M]: different tokenizers (byte-level BPE, SentencePiece)."""
    return adafuse.load_models(list(TEST_PAIR), device="cpu")


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
