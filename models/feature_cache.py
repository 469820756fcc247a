"""The feature cache (option `feature_cache`): a frozen scene encoder's output stored per image and flip, so that
later epochs read it instead of running the encoder.

It is valid only where the encoder computes the same function of the same pixels every epoch: a frozen encoder (eval
mode, no gradients) that sees the RGB image alone (the timm backbone with head_position prompt), and no augmentation
that changes pixels other than the flip, which is cached separately (engine.config checks all of this). A manifest
records what the tokens were computed with (encoder, its weights' fingerprint, input size, dataset folder, dtype); a
folder written by anything else is refused rather than silently mixed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from datasets.errors import DataError

MANIFEST = "manifest.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class FeatureCacheError(DataError):
    """A feature_cache folder that cannot be used (written for another encoder, or a damaged manifest): bad input,
    reported by the entry points as one line with exit status 2."""


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-256 over the encoder's state (names, shapes, dtypes and bytes of every tensor, buffers included: a
    BatchNorm's running statistics and its 0-dimensional num_batches_tracked)."""
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # reshape(-1): a 0-d tensor cannot be viewed as bytes; the bytes of any other tensor are the same either way
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Tokens of `backbone.scene_backbone` in `folder`, one file per (image path, flip).

    `scene_tokens(backbone, image, paths, flips)` returns what `backbone.encode_scene(image)` returns, reading the
    cached entries and computing (then storing) the others; `hits` and `misses` count entries.
    """

    def __init__(self, folder: str | Path, backbone: torch.nn.Module, dataset_dir: str, input_size: int,
                 dtype: str = "float32"):
        if not hasattr(backbone, "encode_scene"):
            raise ValueError(f"feature_cache: the gaze backbone {type(backbone).__name__} has no encode_scene(); "
                             "only gaze_backbone timm with head_position prompt can cache its encoder")
        if any(p.requires_grad for p in backbone.scene_backbone.parameters()):
            raise ValueError("feature_cache: the scene encoder is trained (freeze_scene is off), so its tokens change "
                             "every step and cannot be cached")
        self.folder, self.dtype = Path(folder), DTYPES[dtype]
        self.manifest = {"format": 1, "encoder": getattr(backbone.scene_backbone, "model_name", None),
                         "fingerprint": encoder_fingerprint(backbone.scene_backbone), "input_size": input_size,
                         "dataset_dir": str(Path(dataset_dir).resolve()), "dtype": dtype}
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest_path = self.folder / MANIFEST
        if manifest_path.is_file():
            found = _read_manifest(manifest_path)
            differing = {key: (found.get(key), value) for key, value in self.manifest.items()
                         if found.get(key) != value}
            if differing:
                raise FeatureCacheError(f"feature_cache {self.folder} holds tokens computed differently (cached, now): "
                                 f"{differing}; use another folder for this encoder, or delete this one")
        else:
            _write_atomically(manifest_path, json.dumps(self.manifest, indent=1).encode())
        self.hits = self.misses = 0

    def entry(self, path: str, flip: bool) -> Path:
        digest = hashlib.sha1(f"{path}\0{int(flip)}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.pt"

    @torch.no_grad()
    def scene_tokens(self, backbone, image: torch.Tensor, paths, flips) -> tuple[torch.Tensor, torch.Tensor | None]:
        entries = [self.entry(path, bool(flip)) for path, flip in zip(paths, flips.tolist())]
        found = [_read_entry(entry) if entry.is_file() else None for entry in entries]
        missing = [i for i, item in enumerate(found) if item is None]
        if missing:
            scene_map, prefix = backbone.encode_scene(image[missing])
            for row, i in enumerate(missing):
                item = {"map": scene_map[row].to(self.dtype).cpu().clone()}
                if prefix is not None:
                    item["prefix"] = prefix[row].to(self.dtype).cpu().clone()
                _save_atomically(entries[i], item)
                found[i] = item
        self.hits += len(entries) - len(missing)
        self.misses += len(missing)
        dtype = torch.get_autocast_dtype(image.device.type) if torch.is_autocast_enabled(image.device.type) \
            else image.dtype
        scene_map = torch.stack([item["map"] for item in found]).to(image.device, dtype)
        prefix = torch.stack([item["prefix"] for item in found]).to(image.device, dtype) if "prefix" in found[0] \
            else None
        return scene_map, prefix


def _read_manifest(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        found = error
    if not isinstance(found, dict):
        raise FeatureCacheError(f"feature_cache {path}: not a readable manifest of a feature cache ({found!r:.120}); the "
                         "folder holds something else or its manifest was damaged: use another folder, or delete "
                         "this one")
    return found


def _read_entry(path: Path) -> dict | None:
    """A cached entry (tensors only: weights_only), or None, said aloud, for a damaged one (recomputed and
    replaced; entries are written atomically, so only a copy or an edit damages one)."""
    try:
        item = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(item, dict) and isinstance(item.get("map"), torch.Tensor):
            return item
        problem = "not an entry of a feature cache"
    except Exception as error:  # truncated zip archives, random bytes, refused globals: all just a bad entry
        problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:120] if str(error).strip() else ''}"
    print(f"feature_cache: {path} is damaged ({problem}); computing it again", file=sys.stderr)
    return None


def _save_atomically(path: Path, item: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(item, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)
