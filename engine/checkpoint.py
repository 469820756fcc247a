"""Atomic checkpoint files and the random-generator state that goes into them.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then renamed over the target
with `os.replace`, so a crash during the write leaves the previous checkpoint intact. Files load with
`torch.load(weights_only=True)`: everything stored is tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temporary file + fsync + os.replace + fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_checkpoint(path: str | Path, trust_legacy: bool = False) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`: no arbitrary code is unpickled.

    A file that needs unsafe unpickling (e.g. the original DiffusionGaze checkpoints, which pickle the function
    `F.mse_loss`) is refused with an explanation, unless `trust_legacy` (option `trust_legacy_checkpoint`) allows a
    full unpickling of a file the user trusts.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message for objects outside the weights-only allow-list
        if trust_legacy:
            print(f"{path}: loading with full unpickling (trust_legacy_checkpoint): it holds Python objects beyond "
                  "tensors and containers")
            return torch.load(path, map_location="cpu", weights_only=False)
        raise RuntimeError(
            f"{path}: refused: torch.load(weights_only=True) cannot load it because it holds Python objects other "
            f"than tensors, numbers, strings and containers ({_unsupported_global(error)}). Unpickling such a file "
            "can run arbitrary code. If you trust its origin (e.g. a checkpoint written by the original DiffusionGaze "
            "code, which pickles F.mse_loss), pass --trust_legacy_checkpoint."
        ) from error
    except Exception as error:  # truncated or otherwise corrupt files
        raise RuntimeError(f"{path}: cannot be loaded, the file is corrupt or not a torch checkpoint "
                           f"({type(error).__name__}: {error})") from error


def _unsupported_global(error: Exception) -> str:
    """The line of torch's weights-only error that names the refused object, e.g. 'Unsupported global: GLOBAL x.y'."""
    lines = [line.strip() for line in str(error).splitlines() if "Unsupported" in line]
    return lines[0].split(" was not an allowed")[0] if lines else str(error).splitlines()[0]


def rng_state() -> dict[str, Any]:
    """The state of python's, numpy's and torch's global generators (CUDA too when present)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    python = state["python"]
    random.setstate((python[-2], tuple(python[:-2]), python[-1]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resume_state(checkpoint_path: str | Path, config) -> dict[str, Any] | None:
    """The state to resume a run from: the checkpoint at `checkpoint_path` (the run's last.pt), or None when there is
    none or `config.no_resume` asks to start afresh (said aloud: the folder's checkpoints will be overwritten).
    Options that differ from the checkpoint's are printed (epochs may be raised to train longer)."""
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        return None
    if config.no_resume:
        print(f"--no_resume: starting afresh; checkpoints in {checkpoint_path.parent} will be overwritten")
        return None
    state = load_checkpoint(checkpoint_path)
    changed = {k: (v, getattr(config, k)) for k, v in state["config"].items()
               if k not in ("no_resume", "epochs") and getattr(config, k, v) != v}
    if changed:
        print(f"resuming with options that differ from the checkpoint's (was, now): {changed}")
    return state
