"""Shared fixtures: the real embedded model pair, loaded once per test session (CPU)."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
