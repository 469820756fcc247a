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
