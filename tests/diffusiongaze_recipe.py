"""The deterministic weights and inputs of the DiffusionGaze parity fixtures (tests/fixtures/diffusiongaze/).

Values come from integer arithmetic only, so they are the same on every machine; the fixtures' README says how the
original code was run on exactly these values. Weights follow the original's state-dict layout (key order and shapes
stored in each fixture): entry number `index` of the layout gets `weight_value(index, key, shape)`.
"""
import math

import torch

MODULUS = 2147483647  # 2^31 - 1


def uniform(index: int, shape) -> torch.Tensor:
    """float64 values in [-0.5, 0.5) of the given shape, a fixed function of (index, position)."""
    i = torch.arange(math.prod(shape), dtype=torch.int64)
    h = (i * 1103515245 + (index + 1) * 12345 + 1013904223) % MODULUS
    h = (h * h + 7 * index + 11) % MODULUS
    h = (h * 48271) % MODULUS
    return (h.double() / MODULUS - 0.5).reshape(shape)


def weight_value(index: int, key: str, shape) -> torch.Tensor:
    """BatchNorm running variances in [0.25, 1.25), running means in [-0.4, -0.2), weights of 2 or more dimensions
    uniform with std 1 / sqrt(fan_in), other weights (norm scales) in [0.9, 1.1), biases in [-0.05, 0.05)."""
    u = uniform(index, shape)
    if key.endswith("running_var"):
        return 0.75 + u
    if key.endswith("running_mean"):
        return 0.2 * u - 0.3
    if len(shape) >= 2:
        return u * math.sqrt(12.0) * math.sqrt(1.0 / math.prod(shape[1:]))
    if key.endswith("weight"):
        return 1.0 + 0.2 * u
    return 0.1 * u


def original_state_dict(fixture: dict) -> dict[str, torch.Tensor]:
    """The original-layout state dict of a fixture: recipe values, its stored buffers and overrides."""
    state = {}
    for index, (key, shape) in enumerate(fixture["layout"]):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.int64)
        elif key in fixture["kept_buffers"]:
            state[key] = fixture["kept_buffers"][key]
        else:
            state[key] = weight_value(index, key, tuple(shape))
    state.update(fixture["overrides"])
    return state


def gaze_inputs(batch: int = 2, size: int = 224) -> dict[str, torch.Tensor]:
    """Scene image, face crop, head mask (a box per sample), colour-mapped depth, noisy heatmap x_t and timesteps."""
    head_mask = torch.zeros(batch, 1, size, size, dtype=torch.float64)
    head_mask[0, :, 40:100, 60:130] = 1
    head_mask[1, :, 120:200, 10:70] = 1
    return {"image": 2 * uniform(100001, (batch, 3, size, size)), "face": 2 * uniform(100002, (batch, 3, size, size)),
            "head_mask": head_mask, "depth": uniform(100003, (batch, 3, size, size)) + 0.5,
            "x_t": 2 * uniform(100004, (batch, 1, 64, 64)), "t": torch.tensor([10, 500])}


# Rows of the whole-objective fixtures (fixtures/diffusiongaze/objective_*.pt): two in frame, two out of frame.
OBJECTIVE_INOUT = (1.0, 0.0, 1.0, 0.0)
OBJECTIVE_GAZE = ((0.3, 0.6), (-1.0, -1.0), (0.75, 0.2), (-1.0, -1.0))  # (x, y) in [0, 1]; -1 = out of frame
OBJECTIVE_T = (10, 500, 250, 900)


def objective_batch(size: int = 224, heatmap_size: int = 64) -> dict[str, torch.Tensor]:
    """The one batch of the whole-objective fixtures (float64): scene image and face `2 * uniform`, a head box per
    row, in/out labels, gaze points (the first annotator's, -1 for the out-of-frame rows as the data loaders give
    them), target heatmaps (a peak-1 Gaussian of sigma 3 cells at the gaze point, zeros out of frame), timesteps, and
    the diffusion noise: `noise` [4, 1, 64, 64] of the heatmap, `point_noise` [4, 2] of the point and
    `heatmap_noise` [4, 1, 64, 64] of the rendered heatmap (`point_image`)."""
    rows = len(OBJECTIVE_INOUT)
    head_mask = torch.zeros(rows, 1, size, size, dtype=torch.float64)
    for row, (top, bottom, left, right) in enumerate(((40, 100, 60, 130), (120, 200, 10, 70), (20, 60, 150, 200),
                                                      (100, 180, 100, 160))):
        head_mask[row, :, top:bottom, left:right] = 1
    gaze = torch.tensor(OBJECTIVE_GAZE, dtype=torch.float64)
    cells = torch.arange(heatmap_size, dtype=torch.float64)
    heatmap = torch.zeros(rows, heatmap_size, heatmap_size, dtype=torch.float64)
    for row, inside in enumerate(OBJECTIVE_INOUT):
        if inside:
            x, y = gaze[row] * heatmap_size
            heatmap[row] = torch.exp(-((cells[None, :] - x) ** 2 + (cells[:, None] - y) ** 2) / (2 * 3.0 ** 2))
    return {"image": 2 * uniform(100011, (rows, 3, size, size)), "face": 2 * uniform(100012, (rows, 3, size, size)),
            "head_mask": head_mask, "inout": torch.tensor(OBJECTIVE_INOUT, dtype=torch.float64), "gaze_point": gaze,
            "heatmap": heatmap, "t": torch.tensor(OBJECTIVE_T),
            "noise": 3 * uniform(100013, (rows, 1, heatmap_size, heatmap_size)),
            "point_noise": 3 * uniform(100014, (rows, 2)),
            "heatmap_noise": 3 * uniform(100015, (rows, 1, heatmap_size, heatmap_size))}
