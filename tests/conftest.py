"""Shared test set-up: run from the project root so absolute imports and relative paths resolve."""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors: with several threads, synchronisation dominates (100x slower on a busy 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
