"""Gaussian target heatmaps on the output grid (Chong et al.'s `draw_labelmap` convention).

A gaze point (normalised x, y in [0, 1]) is scaled to the grid, an unnormalised Gaussian is drawn in a
(6 sigma + 1) window centred on the integer cell, and the map is divided by its maximum (peak 1).
"""
from __future__ import annotations

import numpy as np


def draw_gaussian(heatmap: np.ndarray, point_xy: tuple[float, float], sigma: float) -> np.ndarray:
    """Draw a peak-1 Gaussian at `point_xy` (normalised x, y) onto `heatmap` (H, W) in place, keeping the maximum.

    Cells are indexed (row = y, col = x); the centre is `int(x * W)`, `int(y * H)` as in the references.
    A point whose window lies wholly outside the grid leaves the map unchanged.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    height, width = heatmap.shape
    cx, cy = int(point_xy[0] * width), int(point_xy[1] * height)
    radius = int(3 * sigma)
    x0, y0, x1, y1 = cx - radius, cy - radius, cx + radius + 1, cy + radius + 1
    if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
        return heatmap
    size = 2 * radius + 1
    axis = np.arange(size, dtype=np.float64) - radius
    window = np.exp(-(axis[None, :] ** 2 + axis[:, None] ** 2) / (2 * sigma**2))
    gx0, gy0 = max(0, -x0), max(0, -y0)
    gx1, gy1 = min(x1, width) - x0, min(y1, height) - y0
    hx0, hy0, hx1, hy1 = max(0, x0), max(0, y0), min(x1, width), min(y1, height)
    region = heatmap[hy0:hy1, hx0:hx1]
    np.maximum(region, window[gy0:gy1, gx0:gx1], out=region)
    peak = heatmap.max()
    if peak > 0:
        heatmap /= peak
    return heatmap


def gaze_heatmap(point_xy: tuple[float, float] | None, size: int = 64, sigma: float = 3.0) -> np.ndarray:
    """A `size` x `size` float32 target: a peak-1 Gaussian at `point_xy`, or all zeros when it is None (out of frame)."""
    heatmap = np.zeros((size, size), dtype=np.float64)
    if point_xy is not None:
        draw_gaussian(heatmap, point_xy, sigma)
    return heatmap.astype(np.float32)
