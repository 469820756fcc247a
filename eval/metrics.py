"""Per-person gaze-following metrics: the GazeFollow and VideoAttentionTarget (VAT) protocols, in/out AP, angular error.

Each function scores one person's predicted heatmap (H, W; numpy array or torch tensor, any size, 64 x 64 in the
benchmarks) against that person's annotation; the evaluation loop averages over persons. Two AUC protocols exist and
are NOT interchangeable (see /work/shared/reference/metrics.md): `gazefollow_auc` scores at the original image
resolution against one-hot annotator pixels, `vat_auc` scores on the 64 x 64 grid against a 19 x 19 square.

Conventions shared by every function:
- Points are normalised (x, y) in [0, 1], x to the right, y down. `image_size` is (width, height) in pixels, the
  order of PIL's `Image.size`.
- GazeFollow has several annotators per person; `gaze_points` is an (N, 2) array whose padding rows hold (-1, -1).
  A row with a negative coordinate is padding and is ignored.
- The predicted point is the heatmap's argmax cell (row, col) read as `(col / W, row / H)`: the cell's top-left
  corner, not its centre, as in the published evaluation code. A perfect hit therefore still has an L2 error of up to
  one cell diagonal (sqrt(2) / 64 ~ 0.022). Ties go to the first maximum in row-major order (numpy's argmax).
- Heatmaps are converted to float64 before anything else, so numpy and torch inputs give identical numbers.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from datasets.heatmap import gaze_heatmap

# The VAT protocol's target: a sigma-3 Gaussian on the 64 x 64 output grid, thresholded at > 0. Its (6 sigma + 1)
# window makes a 19 x 19 square of positives, truncated at the border.
VAT_GRID_SIZE = 64
VAT_SIGMA = 3.0

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _to_float64(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _as_heatmap(heatmap: ArrayLike) -> np.ndarray:
    heatmap = _to_float64(heatmap)
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise ValueError(f"heatmap must be a non-empty 2-D (H, W) map, got shape {heatmap.shape}; "
                         "squeeze batch and channel dimensions before scoring")
    if not np.isfinite(heatmap).all():
        # A NaN would silently win numpy's argmax and make sklearn raise far from the cause.
        raise ValueError("heatmap contains NaN or infinite values")
    return heatmap


def _as_annotator_points(gaze_points: ArrayLike) -> np.ndarray:
    """(N, 2) normalised annotator points, padding rows removed; a single (x, y) counts as one annotator."""
    points = _to_float64(gaze_points)
    if points.ndim == 1:
        points = points[None, :]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"gaze_points must be (N, 2) normalised (x, y) rows, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("gaze_points contains NaN or infinite values")
    points = points[(points >= 0).all(axis=1)]
    if len(points) == 0:
        raise ValueError("gaze_points has no annotation: every row is padding (negative coordinates)")
    return points


def _as_point(point: ArrayLike, name: str) -> np.ndarray:
    """One in-frame normalised (x, y); accepts shape (2,) or (1, 2)."""
    point = _to_float64(point).reshape(-1)
    if point.shape != (2,):
        raise ValueError(f"{name} must be one normalised (x, y) point, got {point.size} values")
    if not np.isfinite(point).all() or (point < 0).any():
        raise ValueError(f"{name} must be an in-frame point with non-negative coordinates, got {point.tolist()}; "
                         "score in-frame samples only")
    return point


def _resize_bilinear(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize kept in float64, with half-pixel centres and edge clamping (align_corners=False).

    This is `torch.nn.functional.interpolate(mode="bilinear")`, the resize of the Gaze-LLE evaluation code. It equals
    scikit-image's `resize(order=1, mode="edge", anti_aliasing=False)` in both directions and PIL's float ("F") BILINEAR
    resize when upsampling (PIL, like torchvision's antialiased Resize, averages when shrinking). The oldest
    reference resized a uint8 image instead, which quantises the prediction into ties; we keep floats on purpose.
    """
    if heatmap.shape == (height, width):
        return heatmap
    resized = F.interpolate(torch.from_numpy(heatmap)[None, None], size=(height, width), mode="bilinear",
                            align_corners=False, antialias=False)
    return resized[0, 0].numpy()


def binary_auc(target: np.ndarray, prediction: np.ndarray) -> float:
    """ROC AUC of `prediction` against a binary `target` (same shape), equal to sklearn's `roc_auc_score`.

    Computed from ranks: the fraction of (positive, negative) pairs ordered correctly, a tie counting one half. Sorting
    the negatives once and locating each positive makes it about 10x faster than sklearn on a full-resolution
    GazeFollow map with a handful of positive pixels; the tests check it against sklearn.
    """
    target = np.asarray(target, dtype=bool).ravel()
    prediction = np.asarray(prediction, dtype=np.float64).ravel()
    positives, negatives = prediction[target], np.sort(prediction[~target])
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("AUC is undefined when the target has only one class")
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(positives) * len(negatives)))


def argmax_point(heatmap: ArrayLike) -> tuple[float, float]:
    """The normalised (x, y) = (col / W, row / H) of the heatmap's first maximum in row-major order."""
    heatmap = _as_heatmap(heatmap)
    height, width = heatmap.shape
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return float(col / width), float(row / height)


def gazefollow_auc(heatmap: ArrayLike, gaze_points: ArrayLike, image_size: Sequence[int]) -> float:
    """GazeFollow AUC: the heatmap, resized to the original image, scored against the annotators' pixels.

    The ground truth is a (height, width) map, zero except for a 1 at `(int(x * width), int(y * height))` (clamped to
    the last column and row, so x = 1.0 stays inside) for each annotator. `image_size` is (width, height) in pixels.
    """
    width, height = (int(side) for side in image_size)
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height) pixels, got {tuple(image_size)}")
    points = _as_annotator_points(gaze_points)
    prediction = _resize_bilinear(_as_heatmap(heatmap), height, width)
    return binary_auc(_annotator_map(points, width, height), prediction)


def _annotator_map(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (height, width) map of zeros with a 1 at `(int(x * width), int(y * height))` of each point, clamped to the
    last column and row (so x = 1.0 stays inside)."""
    target = np.zeros((height, width))
    cols = np.minimum((points[:, 0] * width).astype(np.int64), width - 1)
    rows = np.minimum((points[:, 1] * height).astype(np.int64), height - 1)
    target[rows, cols] = 1.0
    return target


def gazefollow_l2(heatmap: ArrayLike, gaze_points: ArrayLike) -> tuple[float, float]:
    """(min_l2, avg_l2) in normalised units between the argmax point and the annotators.

    min_l2 is the distance to the nearest annotator; avg_l2 is the distance to the annotators' MEAN POINT, which is
    not the mean of the per-annotator distances.
    """
    predicted = np.array(argmax_point(heatmap))
    points = _as_annotator_points(gaze_points)
    min_l2 = np.linalg.norm(points - predicted, axis=1).min()
    avg_l2 = np.linalg.norm(points.mean(axis=0) - predicted)
    return float(min_l2), float(avg_l2)


HEATMAP_AP_GRID = 64  # the original DiffusionGaze evaluation scores the heatmap AP on the 64 x 64 output grid


def heatmap_ap(heatmap: ArrayLike, gaze_points: ArrayLike) -> float:
    """The original DiffusionGaze code's heatmap AP (its `avg_hm_ao`, printed as "Gaze heatmap AP"): the average
    precision (sklearn's `average_precision_score`) of the heatmap's cells against a 64 x 64 map, zero except for a 1
    in the cell `(min(int(x * 64), 63), min(int(y * 64), 63))` of each annotator. The heatmap is scored on the 64 x 64
    grid (another size is first resized bilinearly, as `gazefollow_auc` does; the original's maps were 64 x 64).
    A ranking measure of how well the heatmap singles out the annotated cells; not a published benchmark metric."""
    points = _as_annotator_points(gaze_points)
    prediction = _resize_bilinear(_as_heatmap(heatmap), HEATMAP_AP_GRID, HEATMAP_AP_GRID)
    target = _annotator_map(points, HEATMAP_AP_GRID, HEATMAP_AP_GRID).astype(np.int64)
    return float(average_precision_score(target.ravel(), prediction.ravel()))


def vat_auc(heatmap: ArrayLike, gaze_point: ArrayLike) -> float:
    """VAT AUC on the 64 x 64 grid: positives are the cells of the sigma-3 target Gaussian (> 0), a 19 x 19 square.

    A heatmap of another size is first resized to 64 x 64 with the same bilinear resize as `gazefollow_auc`.
    Defined for in-frame person-frames only.
    """
    point = _as_point(gaze_point, "gaze_point")
    target = gaze_heatmap((point[0], point[1]), size=VAT_GRID_SIZE, sigma=VAT_SIGMA) > 0
    prediction = _resize_bilinear(_as_heatmap(heatmap), VAT_GRID_SIZE, VAT_GRID_SIZE)
    return binary_auc(target, prediction)


def vat_l2(heatmap: ArrayLike, gaze_point: ArrayLike) -> float:
    """VAT L2: normalised distance from the argmax point to the single annotated point (in-frame samples only)."""
    point = _as_point(gaze_point, "gaze_point")
    return float(np.linalg.norm(np.array(argmax_point(heatmap)) - point))


def inout_ap(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision of the in/out prediction over the whole set, in-frame (label 1) being the positive class.

    `scores` may be logits or probabilities: AP depends only on their order. Every sample counts, in or out.
    """
    labels, scores = _to_float64(labels), _to_float64(scores)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must be 1-D and of equal length, got {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0 (out of frame) or 1 (in frame), found {np.unique(labels).tolist()}")
    if not labels.any():
        raise ValueError("inout_ap is undefined without an in-frame (label 1) sample")
    if not np.isfinite(scores).all():
        raise ValueError("scores contains NaN or infinite values")
    return float(average_precision_score(labels.astype(np.int64), scores))


def angular_error(heatmap: ArrayLike, eye_point: ArrayLike, gaze_points: ArrayLike) -> tuple[float, float]:
    """(min_deg, avg_deg): angle between the eye-to-argmax and eye-to-annotator directions; min, mean over annotators.

    Directions are taken in normalised image coordinates, unscaled by the aspect ratio, as in the published GazeFollow
    and GOO evaluation code; on a non-square image this is not the angle in pixel space. The cosine is computed
    exactly: the references add 1e-6 to the norm product, which raises small angles (a perfect direction with a norm
    product of 0.01 reads 0.8 degrees). When either direction has zero length (the argmax or an annotator on the eye)
    the angle is undefined; it is scored as 90 degrees, the chance-level expectation and what the references'
    epsilon gives in that case, rather than NaN.
    """
    predicted = np.array(argmax_point(heatmap))
    eye = _as_point(eye_point, "eye_point")
    points = _as_annotator_points(gaze_points)
    predicted_direction = predicted - eye
    annotated_directions = points - eye
    norm_products = np.linalg.norm(annotated_directions, axis=1) * np.linalg.norm(predicted_direction)
    dots = annotated_directions @ predicted_direction
    cosines = np.divide(dots, norm_products, out=np.zeros_like(dots), where=norm_products > 0)
    angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
    return float(angles.min()), float(angles.mean())


GOO_GRID_SIZE = 5  # the original GOO evaluation scores a 5 x 5 grid


def goo_grid_auc(heatmap: ArrayLike, gaze_point: ArrayLike, grid: int = GOO_GRID_SIZE) -> float:
    """GOO's own AUC (Tomas et al. 2021), reported beside, not instead of, the GazeFollow protocol: the ground truth is
    a grid x grid map with one hot cell, `(min(int(x * grid), grid - 1), min(int(y * grid), grid - 1))`, and the
    prediction is the heatmap averaged over grid x grid equal blocks (an area resize; for 64 cells and a grid of 5
    the blocks overlap as in torch's adaptive average pooling)."""
    point = _as_point(gaze_point, "gaze_point")
    prediction = F.adaptive_avg_pool2d(torch.from_numpy(_as_heatmap(heatmap))[None, None], grid)[0, 0].numpy()
    target = np.zeros((grid, grid))
    target[min(int(point[1] * grid), grid - 1), min(int(point[0] * grid), grid - 1)] = 1.0
    return binary_auc(target, prediction)
