"""Input-independent heatmaps: the floors a gaze-following model must beat, scored with the same metrics as a model.

`centre_prior_heatmap` bets on the image centre; `train_prior_heatmap` is the average training target, a stronger
floor that knows where people tend to look in the training set. Both are float32 (size, size) maps on the output grid.
"""
from __future__ import annotations

import numpy as np
import torch

from datasets.heatmap import gaze_heatmap


def centre_prior_heatmap(size: int = 64, sigma: float = 16.0) -> np.ndarray:
    """A peak-1 Gaussian over the whole grid, centred on the cell that the point (0.5, 0.5) maps to.

    `sigma` is in grid cells; 16 is a quarter of the default 64-cell side, a broad prior. Its value hardly matters:
    the argmax, hence every L2 and angle, is the centre cell whatever the width, and the VAT AUC depends only on the
    order of the cells, which any decreasing function of the distance to the centre leaves the same. The GazeFollow
    AUC moves only in the fourth decimal, because the bilinear resize to the image mixes neighbouring cells. What
    matters is that the Gaussian is not truncated and does not underflow to 0 at the corners (true for sigma above
    about 4 cells at size 64): zeros would tie the far cells and move the AUC. The centre cell is `int(0.5 * size)`,
    the convention of the training targets, so `argmax_point` reads exactly (0.5, 0.5) on an even grid.
    """
    if size <= 0 or sigma <= 0:
        raise ValueError(f"size and sigma must be positive, got size={size}, sigma={sigma}")
    centre = int(0.5 * size)
    offsets = np.arange(size, dtype=np.float64) - centre
    squared_distance = offsets[None, :] ** 2 + offsets[:, None] ** 2
    return np.exp(-squared_distance / (2 * sigma**2)).astype(np.float32)


def train_prior_heatmap(gaze_points: np.ndarray | torch.Tensor, size: int = 64, sigma: float = 3.0) -> np.ndarray:
    """The mean training target over the in-frame gaze points (N, 2), normalised (x, y).

    Each target is `datasets.heatmap.gaze_heatmap(point, size, sigma)`; rows with a negative coordinate (out of frame
    or padding) are left out, as they have no target Gaussian to average.
    """
    if isinstance(gaze_points, torch.Tensor):
        gaze_points = gaze_points.detach().cpu().numpy()
    points = np.asarray(gaze_points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"gaze_points must be (N, 2) normalised (x, y) rows, got shape {points.shape}")
    points = points[(points >= 0).all(axis=1)]
    if len(points) == 0:
        raise ValueError("train_prior_heatmap needs at least one in-frame gaze point")
    # A target depends only on the grid cell its point falls in, so draw each occupied cell once and weight it by
    # its count: a training set of 10^5 points costs at most size * size draws.
    cells = (points * size).astype(np.int64)
    _, first_index, counts = np.unique(cells, axis=0, return_index=True, return_counts=True)
    total = np.zeros((size, size), dtype=np.float64)
    for index, count in zip(first_index, counts):
        total += count * gaze_heatmap((points[index, 0], points[index, 1]), size=size, sigma=sigma)
    return (total / len(points)).astype(np.float32)
