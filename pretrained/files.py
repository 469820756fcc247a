"""Reading weight files safely: torch checkpoints with `torch.load(weights_only=True)` and `.safetensors` files.

The lowest room that opens weight files: `pretrained.loading` (initial and evaluation weights), `pretrained.export`
and `engine.checkpoint` (resume) all read through here. A file that cannot be used is a `CheckpointError` whose
message names the file, says what is wrong with it and what to do.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError, ValueError):
    """A weight or checkpoint file cannot be used (missing, corrupt, unsafe, or made for another model); the message
    names the file and what to do. A RuntimeError and a ValueError, the types these failures raised before."""


def load_checkpoint(path: str | os.PathLike, trust_legacy: bool = False) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`: no arbitrary code is unpickled.

    A file that really is a pickle of other Python objects (e.g. the original DiffusionGaze checkpoints, which pickle
    the function `F.mse_loss`) is refused with an explanation, unless `trust_legacy` (option
    `trust_legacy_checkpoint`) allows a full unpickling of a file the user trusts. A truncated or corrupt file is an
    error that says so (and never suggests unpickling it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _unsupported_global(error)
        if refused is None:  # not a pickle of other objects: random bytes, a torn write, another format
            raise CheckpointError(_corrupt(path, error)) from error
        if trust_legacy:
            print(f"{path}: loading with full unpickling (trust_legacy_checkpoint): it holds Python objects beyond "
                  "tensors and containers")
            return torch.load(path, map_location="cpu", weights_only=False)
        raise CheckpointError(
            f"{path}: refused: torch.load(weights_only=True) cannot load it because it holds Python objects other "
            f"than tensors, numbers, strings and containers ({refused}). Unpickling such a file can run arbitrary "
            "code. If you trust its origin (e.g. a checkpoint written by the original DiffusionGaze code, which "
            "pickles F.mse_loss), pass --trust_legacy_checkpoint (main.py, predict.py, python -m pretrained.export), "
            "or re-save its tensors once in a Python session you trust (docs/trust.md)."
        ) from error
    except Exception as error:  # truncated zip archives, files of another format
        raise CheckpointError(_corrupt(path, error)) from error


def _corrupt(path: Path, error: Exception) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return (f"{path}: cannot be loaded: the file is truncated, corrupt or not a torch checkpoint "
            f"({type(error).__name__}: {first}); use an intact copy (a run's ckpt_epoch_N.pt, or copy it again)")


def _unsupported_global(error: Exception) -> str | None:
    """'Unsupported global: GLOBAL x.y' when torch's weights-only unpickler refused a real pickle of other objects;
    None when the bytes are no valid pickle at all (torch reports 'Unsupported operand' and the like)."""
    for line in str(error).splitlines():
        if "Unsupported global" in line:
            return line.strip().split(" was not an allowed")[0]
    return None


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a .safetensors file (see pretrained.export); a corrupt file is a CheckpointError."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as stream:
            return {key: stream.get_tensor(key) for key in stream.keys()}, dict(stream.metadata() or {})
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a valid .safetensors file ({error}): it is truncated or corrupt; export "
                              "it again with `python -m pretrained.export CHECKPOINT OUTPUT.safetensors`") from error
