"""The deterministic weights and inputs of the peer-model parity fixtures (tests/fixtures/peers/).

Values come from 32-bit integer hashing and correctly rounded float arithmetic only, so they are the same on every
machine; tests/fixtures/peers/README.md says how the peers' own code was run on exactly these values. A tensor's
values depend on its key (the peer's state-dict name) and shape, not on the file layout it is written in, so the
DINOv2 weights are the same in the hub's and timm's layouts. Cheap enough for the 300 M weights of a ViT-L (numpy,
a few seconds).
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import torch

_GOLDEN = 0x9E3779B1


def uniform(seed: int, shape) -> torch.Tensor:
    """float32 values in [-0.5, 0.5) of the given shape: murmur3's 32-bit finaliser of (position * golden) ^ seed."""
    count = math.prod(shape)
    with np.errstate(over="ignore"):
        h = np.arange(count, dtype=np.uint32) * np.uint32(_GOLDEN)
        h ^= np.uint32((seed * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    values = h.astype(np.float64) * 2.0 ** -32 - 0.5
    return torch.from_numpy(values.astype(np.float32)).reshape(tuple(shape))


def seed_of(key: str) -> int:
    return zlib.crc32(key.encode())


# Scales for entries whose generic rule (below) would make the test blind to them, by the key's last name component:
# DINOv2's position table and class token O(1), as in the pretrained model (else a wrong position resampling would
# hardly change the features); LayerScale near its trained size; Gaze-LLE's head and in/out tokens O(1), like the
# N(0, 1) start of an nn.Embedding (else the people of one image would get nearly the same map).
_SCALED = {"pos_embed": 1.0, "cls_token": 1.0, "mask_token": 1.0, "head_token.weight": 2.0,
           "inout_token.weight": 2.0}


def weight(key: str, shape, residual_scale: float = 1.0) -> torch.Tensor:
    """The recipe value of one state-dict entry: BatchNorm running variances in [0.25, 1.25), running means in
    [-0.4, -0.2); LayerScale gammas in [0.2, 0.4); weights of 2 or more dimensions uniform with std 1 / sqrt(fan_in)
    (except the entries of _SCALED, uniform in +-scale / 2); other weights (norm scales) in [0.9, 1.1), biases in
    [-0.05, 0.05). `residual_scale` multiplies the last convolution of each ResNet block (`conv3`), so that a deep
    ResNet's residual stream stays O(1) with these random weights, with or without its BatchNorms."""
    u = uniform(seed_of(key), shape)
    name = key.rsplit(".", 1)[-1]
    tail = ".".join(key.rsplit(".", 2)[-2:])
    if key.endswith("running_var"):
        return 0.75 + u
    if key.endswith("running_mean"):
        return 0.2 * u - 0.3
    if name == "gamma":
        return 0.3 + 0.2 * u
    scale = _SCALED.get(tail, _SCALED.get(name))
    if scale is not None:
        return scale * u
    if len(shape) >= 2:
        value = u * math.sqrt(12.0 / math.prod(shape[1:]))
        return value * residual_scale if ".conv3." in key else value
    if key.endswith("weight"):
        return 1.0 + 0.2 * u
    return 0.1 * u


def state_dict(layout, kept=None, residual_scale: float = 1.0, overrides=None, scales=None) -> dict[str, torch.Tensor]:
    """A state dict in a peer's layout (a list of (key, shape)): recipe values, BatchNorm counters 0, the `kept`
    entries (buffers the peer computes itself, stored in the fixture) as given; `scales` {key: factor} multiply and
    then `overrides` {key: value} are added to the recipe value (e.g. a bias that keeps a ReLU from being zero
    everywhere, a factor that keeps an output O(1), so that float32 round-off stays far below the tests' 1e-5)."""
    kept, overrides, scales = kept or {}, overrides or {}, scales or {}
    state = {}
    for key, shape in layout:
        if key in kept:
            state[key] = kept[key].clone()
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.int64)
        else:
            state[key] = weight(key, tuple(shape), residual_scale) * scales.get(key, 1.0) + overrides.get(key, 0.0)
    return state


# --- inputs -------------------------------------------------------------------------------------------------------

def image_batch(seed: int, count: int, size: int) -> torch.Tensor:
    """count images [count, 3, size, size] in [-1, 1), the range of ImageNet-normalised pixels' bulk."""
    return 2.0 * uniform(seed, (count, 3, size, size))


# Gaze-LLE: two images; people per image, their normalised head boxes (None: no box). Edges 2.5 / 32 and 3.5 / 32 fall
# on rounding ties (Python rounds them half to even: 2 and 4).
GAZELLE_BOXES = [[(0.1, 0.2, 0.3, 0.45), (2.5 / 32, 3.5 / 32, 0.6, 0.55), None], [(0.55, 0.05, 0.8, 0.35)]]
GAZELLE_BOXES_VITL = [[(0.1, 0.2, 0.3, 0.45), None]]  # ViT-L: the first image, a box and no box
GAZELLE_IMAGE_SEED = 7001

# Chong et al.: pixel boxes on a 224 x 224 grid for the head channels (x_min, y_min, x_max, y_max).
CHONG_IMAGE_SEED, CHONG_FACE_SEED = 7101, 7102
CHONG_SPATIAL_BOXES = [(40, 30, 100, 96), (120, 60, 170, 120), (10, 150, 60, 210)]
# Two people's tracks. In chunks of 3 frames, both tracks in one batch make calls of 6 and 3 frames; each track alone
# makes calls of 3 and 2 frames (the first) and 3 and 1 (the second: a single-frame call, its BatchNorms skipped).
CHONG_TRACK_LENGTHS = (5, 4)


def chong_head_channel(box) -> torch.Tensor:
    x_min, y_min, x_max, y_max = box
    channel = torch.zeros(1, 224, 224)
    channel[0, y_min:y_max, x_min:x_max] = 1
    return channel


def chong_spatial_inputs() -> dict[str, torch.Tensor]:
    count = len(CHONG_SPATIAL_BOXES)
    return {"image": image_batch(CHONG_IMAGE_SEED, count, 224), "face": image_batch(CHONG_FACE_SEED, count, 224),
            "head_channel": torch.stack([chong_head_channel(box) for box in CHONG_SPATIAL_BOXES])}


def chong_tracks() -> list[dict[str, torch.Tensor]]:
    """Each person's consecutive frames: {"image", "head_channel", "face"} [T, ...]; the head box drifts 4 px a
    frame."""
    tracks = []
    for person, length in enumerate(CHONG_TRACK_LENGTHS):
        x, y = CHONG_SPATIAL_BOXES[person][:2]
        boxes = [(x + 4 * t, y + 2 * t, x + 4 * t + 56, y + 2 * t + 60) for t in range(length)]
        tracks.append({"image": image_batch(CHONG_IMAGE_SEED + 10 * (person + 1), length, 224),
                       "face": image_batch(CHONG_FACE_SEED + 10 * (person + 1), length, 224),
                       "head_channel": torch.stack([chong_head_channel(box) for box in boxes])})
    return tracks


def projection(seed: int, channels: int, outputs: int = 4) -> torch.Tensor:
    """A fixed [channels, outputs] matrix for storing projections of wide feature maps."""
    return uniform(seed, (channels, outputs)) * math.sqrt(12.0 / channels)
