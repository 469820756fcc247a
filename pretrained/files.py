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


HUB_PREFIX = "hf-hub:"  # `--weights hf-hub:OWNER/NAME[@REVISION]`: a Hub repository, not a local path (timm's spelling)


class CheckpointError(RuntimeError, ValueError):
    """A weight or checkpoint file cannot be used (missing, corrupt, unsafe, or made for another model); the message
    names the file and what to do. A RuntimeError and a ValueError, the types these failures raised before."""


def load_checkpoint(path: str | os.PathLike, trust_legacy: bool = False) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`: no arbitrary code is unpickled.

    A file that really is a pickle of other Python objects (e.g. the original DiffusionGaze checkpoints, which pickle
    the function `F.mse_loss`) is refused with an explanation, unless `trust_legacy` (option
    `trust_legacy_checkpoint`) allows a full unpickling of a file the user trusts. A truncated or corrupt file is an
    error that says so (and never suggests unpickling it).

    A folder written by save_pretrained, or `hf-hub:OWNER/NAME[@REVISION]`, is read by pretrained.hub and handed over
    in this layout ({"format", "config", "model"}; from safetensors, so nothing is unpickled).
    """
    if is_hub_reference(path):
        from pretrained.hub import load_hub_checkpoint  # imported here: pretrained.hub reads through this module

        return load_hub_checkpoint(path)
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


def is_hub_reference(path: str | os.PathLike) -> bool:
    """Whether a weights argument names a Hub-style folder or repository (pretrained.hub): `hf-hub:OWNER/NAME` or a
    directory."""
    return str(path).startswith(HUB_PREFIX) or Path(path).is_dir()


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


# --- which of this project's two trainers a checkpoint belongs to -------------------------------------------------

TRAINERS = {
    "main.py": "the gaze-following trainer (main.py)",
    "gaze360_main.py": "the Gaze360 / RT-GENE trainer (gaze360_main.py)",
}
TRAINER_USES = {
    "main.py": "evaluate it with `python main.py --eval_weights {path}`, predict with `python predict.py --weights "
               "{path}`",
    "gaze360_main.py": "evaluate it with `python gaze360_main.py --eval_weights {path}`; predict.py reads it as "
                       "--gaze360_weights",
}
# Checkpoints written since the trainer was recorded name it ("trainer"); earlier ones are told apart by options only
# one trainer stores in its configuration, and weight files by the names of their tensors (this project's models,
# the original DiffusionGaze and MultiZoomGaze / Gaze360 files).
_STORED_OPTIONS = {"main.py": ("unet_inplanes", "train_time_steps", "diff_normalization"),
                   "gaze360_main.py": ("crop_sizes", "frame_crops", "lstm_bidirectional")}
_TENSOR_PREFIXES = {"main.py": ("gaze_backbone.", "unet.", "inout_head.", "gaze_model.", "model.", "sequential.",
                                "fc_inout."),
                    "gaze360_main.py": ("backbone.", "feature.", "lstm.", "head.", "stn.", "base_model.",
                                        "base_model_tail.", "last_layer.", "hidden2tag.")}


def trainer_of(checkpoint: Any) -> str | None:
    """Which trainer of this project a loaded checkpoint is for -- "main.py" or "gaze360_main.py" (also for the
    original DiffusionGaze and MultiZoomGaze / Gaze360 files each reads) -- or None when it cannot be told (another
    project's file)."""
    if not isinstance(checkpoint, dict):
        return None
    if checkpoint.get("trainer") in TRAINERS:
        return checkpoint["trainer"]
    stored = checkpoint.get("config")
    if isinstance(stored, dict):
        for trainer, names in _STORED_OPTIONS.items():
            if any(name in stored for name in names):
                return trainer
    for container in ("model", "state_dict", "model_state_dict", None):
        state = checkpoint if container is None else checkpoint.get(container)
        if isinstance(state, dict) and state and all(isinstance(key, str) for key in state):
            found = _trainer_of_tensor_names(list(state))
            if found is not None:
                return found
    return None


def _trainer_of_tensor_names(keys: list[str]) -> str | None:
    keys = [key[len("module."):] if key.startswith("module.") else key for key in keys]
    found = [trainer for trainer, prefixes in _TENSOR_PREFIXES.items() if all(key.startswith(prefixes) for key in keys)]
    return found[0] if len(found) == 1 else None


def check_trainer(checkpoint: Any, path: str | os.PathLike, trainer: str) -> None:
    """A CheckpointError when `checkpoint` (loaded from `path`) belongs to the other trainer than `trainer`, saying
    which one made it and how to use it there."""
    found = trainer_of(checkpoint)
    if found is not None and found != trainer:
        raise CheckpointError(f"{path}: a checkpoint for {TRAINERS[found]}, not for {TRAINERS[trainer]}: "
                              + TRAINER_USES[found].format(path=path))
