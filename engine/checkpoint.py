"""Checkpoints of both trainers: one `Checkpointer` (everything with a `state_dict()`, the random generators and the
stored configuration in one file), written atomically, and the random-generator state that goes into them.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then renamed over the target
with `os.replace`, so a crash during the write leaves the previous checkpoint intact. Files load with
`torch.load(weights_only=True)`: everything stored is tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

import errno
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrained.files import CheckpointError, check_trainer, load_checkpoint  # noqa: F401  (read here by the engine)

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
    a DiskFullError naming the file and saying what is on disk; the previous file at `path`, if any, is left as it
    was."""
    path = Path(path)
    try:
        _write_atomically(path, state)
    except Exception as error:
        if no_space_left(error):
            raise DiskFullError(f"cannot write {path}: no space left on the device (or the disk quota is used up); "
                                f"{on_disk(path)}") from error
        raise


def on_disk(path: Path) -> str:
    """What a failed write of checkpoint `path` leaves: the previous file (when one was written), or nothing."""
    if path.is_file():
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
        return (f"the previous {path.name} (written {written}) is intact: free some space and run the same command "
                "again to resume from it")
    others = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
    return (f"there is no earlier {path.name} in {path.parent}"
            + (f" (it holds {', '.join(others)})" if others else ", nor any other checkpoint")
            + ": nothing to resume from this run yet; free some space and run the same command again")


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


class Checkpointer:
    """Everything a run resumes from, in one file (detectron2's Checkpointer, for both trainers): the state dicts of
    the named objects (model, optimizer, scheduler, GradScaler, EMA: anything with `state_dict` / `load_state_dict`),
    python's, numpy's and torch's random generators, the stored configuration, the trainer that wrote it, and the
    trainer's own counters (epoch, step, ...) given to `state`.

    `Checkpointer("main.py", model=model, optimizer=optimizer, ema=None)`: objects given as None are left out.
    """

    def __init__(self, trainer: str, **objects):
        self.trainer = trainer
        self.objects = {name: obj for name, obj in objects.items() if obj is not None}

    def state(self, config, parts: tuple[str, ...] | None = None, rng: bool = True, **counters) -> dict[str, Any]:
        """The checkpoint's content: `parts` of the objects (all by default), the RNG state, `config` and `counters`."""
        state: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "trainer": self.trainer}
        state.update({name: obj.state_dict() for name, obj in self.objects.items() if parts is None or name in parts})
        if rng:
            state["rng"] = rng_state()
        return {**state, "config": config.to_dict(), **counters}

    def save(self, path: str | Path, config, **counters) -> None:
        """Write `state(config, **counters)` to `path` atomically."""
        save_checkpoint(path, self.state(config, **counters))

    def restore(self, state: dict[str, Any], path: str | Path, optional: tuple[str, ...] = ()) -> list[str]:
        """Load every object's state from `state` (read from `path`), then the random generators. Returns the names
        of `optional` objects the file does not hold (the caller decides how they start); any other missing one, or
        one that does not fit (another version of the code), is a CheckpointError naming the file."""
        check_trainer(state, path, self.trainer)
        absent = []
        for name, obj in self.objects.items():
            if name not in state:
                if name in optional:
                    absent.append(name)
                    continue
                raise CheckpointError(f"{path}: holds no {name} state, so the run cannot be resumed exactly: start a "
                                      "new run (--no_resume or another --tag)")
            try:
                obj.load_state_dict(state[name])
            except (RuntimeError, KeyError, ValueError) as error:  # torch's "Error(s) in loading state_dict"
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                what = "its weights do not fit the model" if name == "model" else \
                    f"its {name} state does not fit the one"
                raise CheckpointError(f"{path}: {what} built from its own stored configuration ({first}); it was "
                                      "written by another version of the code: start a new run (--no_resume or "
                                      "another --tag)") from error
        set_rng_state(state["rng"])
        return absent
