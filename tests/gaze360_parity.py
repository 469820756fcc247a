"""Deterministic weights and inputs for the Gaze360 parity fixtures (tests/fixtures/gaze360/README.md).

The fixtures hold no weights: every tensor of a model in the ORIGINAL code's layout is drawn from a generator seeded
by (seed, CRC32 of its key), so the tests (and the scratch script that ran the original code) rebuild the same
state dict from the key list stored in the fixture. Inputs come from a seeded generator too.
"""
from __future__ import annotations

import math
import zlib

import torch


def seeded_tensor(key: str, shape: list[int], seed: int) -> torch.Tensor:
    """The tensor of `key` (an original-layout name) in float64; BatchNorm statistics kept plausible."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.zeros((), dtype=torch.long)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)
    values = torch.randn(shape, generator=generator, dtype=torch.float64)
    if key.endswith("running_mean") or "bias" in key.rsplit(".", 1)[-1]:
        return 0.1 * values
    if len(shape) == 1:  # BatchNorm scale, below 1 so that activations stay O(1) through the residual blocks
        return 0.5 + 0.05 * values
    fan_in = math.prod(shape[1:])
    return values * (math.sqrt(2.0 / fan_in) if len(shape) == 4 else 1.0 / math.sqrt(fan_in))


def seeded_state_dict(keys: list[tuple[str, list[int]]], seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    return {key: (t if t.dtype == torch.long else t.to(dtype)) for key, shape in keys
            for t in [seeded_tensor(key, list(shape), seed)]}


def seeded_inputs(shape: list[int], seed: int, dtype=torch.float64) -> torch.Tensor:
    """Images [B, L, 3, S, S] ~ N(0, 1) (normalised-image scale)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


PARITY_ROW = "rec_000/head/000001/000010.jpg"
PARITY_GAZE = (0.3, -0.2, -0.9327379053)  # a unit vector


def write_parity_frames(root) -> None:
    """A one-row Gaze360-format folder: test.txt with PARITY_ROW and its frames 7..13 as seeded, non-square
    textures (smooth gradients + noise), stored losslessly (PNG bytes under the .jpg names: PIL reads by content)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    folder = root / "imgs" / PARITY_ROW.rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    for frame in range(7, 14):
        rng = np.random.default_rng(frame)
        height, width = 120 - 3 * frame, 80 + 5 * frame
        ys, xs = np.mgrid[0:height, 0:width]
        base = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], -1)
        pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{frame:06d}.jpg", format="PNG")
    (root / "test.txt").write_text(f"{PARITY_ROW} {PARITY_GAZE[0]} {PARITY_GAZE[1]} {PARITY_GAZE[2]} \n")


def image_summary(images) -> dict:
    """[L, 3, S, S] -> per-image channel means and 64 pixels at seeded positions (a compact fingerprint)."""
    import numpy as np
    import torch

    images = torch.as_tensor(images, dtype=torch.float64)
    size = images.shape[-1]
    rng = np.random.default_rng(0)
    rows, cols, channels = rng.integers(0, size, 64), rng.integers(0, size, 64), rng.integers(0, 3, 64)
    return {"means": images.mean(dim=(2, 3)).tolist(),
            "pixels": images[:, channels, rows, cols].tolist()}
