"""Atomic checkpoint files and the random-generator state that goes into them.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then renamed over the target
with `os.replace`, so a crash during the write leaves the previous checkpoint intact. Files load with
`torch.load(weights_only=True)`: everything stored is tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrained.files import CheckpointError, load_checkpoint  # noqa: F401  (read here by the engine)

CHECKPOINT_FORMAT = 1


class DiskFullError(OSError):
    """A run's file could not be written: no space left on the device (or the quota is used up)."""


def no_space_left(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is ENOSPC / EDQUOT (torch.save reports a full disk as a
    RuntimeError 'unexpected pos' raised while handling the OSError of the write)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temporary file + fsync + os.replace + fsync of the folder). A full disk is
    a DiskFullError naming the file; the previous file at `path` is left as it was."""
    path = Path(path)
    try:
        _write_atomically(path, state)
    except Exception as error:
        if no_space_left(error):
            raise DiskFullError(f"cannot write {path}: no space left on the device (or the disk quota is used up); "
                                f"the previous {path.name} is intact: free some space and run the same command "
                                "again to resume") from error
        raise


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
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
