"""Evaluation of 3D gaze predictions: angular error (clamped) per subset, the uncertainty-error correlation, the
mean-direction baseline, a per-sample CSV and metrics.json.

Angular error (datasets.md): acos(clamp(dot(unit prediction, unit label), -1, 1)) in degrees, mean over samples;
clamping first avoids the NaN the original produced for dot products that round above 1.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from datasets.errors import DataError
from gaze360.data import SUBSETS, subset_masks, yaw_pitch_to_gaze
from gaze360.models import decode_yaw_pitch


def angular_error_degrees(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-row angle in degrees between [N, 3] vectors (normalised here); the cosine is clamped to [-1, 1]."""
    prediction = np.asarray(prediction, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    prediction = prediction / np.linalg.norm(prediction, axis=-1, keepdims=True)
    label = label / np.linalg.norm(label, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((prediction * label).sum(-1), -1.0, 1.0)))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (e.g. a model without uncertainty)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="mergesort")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=np.float64)
        unique, counts = np.unique(values, return_counts=True)
        for value in unique[counts > 1]:  # tied values share their average rank
            result[values == value] = result[values == value].mean()
        return result
    return pearson(ranks(x), ranks(y))


@torch.no_grad()
def predict(model, loader, device: torch.device, autocast, target: str,
            yaw_decoding: str = "atan2") -> dict[str, np.ndarray]:
    """Run `model` over `loader` (dataset order): predicted (yaw, pitch) [N, 2] radians, sigma [N] and the dataset
    `index` [N] of each row (samples dropped as unreadable are absent)."""
    model.eval()
    yaw_pitch, sigma, index = [], [], []
    for batch in loader:
        if batch is None:
            continue
        index.append(torch.as_tensor(batch["index"]))
        with autocast():
            prediction = model(batch["images"].to(device))
        yaw_pitch.append(decode_yaw_pitch(prediction["output"].float(), target, yaw_decoding).cpu())
        sigma.append(prediction["sigma"].float()[:, 0].cpu())
    if not index:
        raise DataError("no sample could be read (every one had an unreadable frame)")
    return {"yaw_pitch": torch.cat(yaw_pitch).double().numpy(), "sigma": torch.cat(sigma).double().numpy(),
            "index": torch.cat(index).numpy()}


def summarise(errors: np.ndarray, gaze: np.ndarray, config, sigma: np.ndarray | None = None) -> dict:
    """Mean angular error and count per subset (front_facing as configured), plus the correlations of sigma with
    the error over all samples."""
    masks = subset_masks(gaze, config.front_facing, config.front_facing_degrees)
    summary = {}
    for name in SUBSETS:
        chosen = errors[masks[name]]
        summary[f"{name}_deg"] = float(chosen.mean()) if len(chosen) else float("nan")
        summary[f"{name}_count"] = int(len(chosen))
    if sigma is not None:
        summary["sigma_error_pearson"] = pearson(sigma, errors)
        summary["sigma_error_spearman"] = spearman(sigma, errors)
    return summary


def mean_direction(gaze: np.ndarray) -> np.ndarray:
    """The baseline prediction: the normalised mean of the training gaze vectors."""
    mean = np.asarray(gaze, dtype=np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return mean / norm if norm > 1e-9 else np.array([0.0, 0.0, -1.0])


def evaluate_split(model, dataset, loader, config, device, autocast, baseline_direction: np.ndarray,
                   csv_path: Path | None = None) -> dict:
    """Errors of the model and of the mean-direction baseline on one split; optionally the per-sample CSV."""
    result = predict(model, loader, device, autocast, config.target, config.yaw_decoding)
    rows = result["index"]
    gaze = dataset.gaze[rows]
    errors = angular_error_degrees(yaw_pitch_to_gaze(result["yaw_pitch"]), gaze)
    baseline_errors = angular_error_degrees(np.broadcast_to(baseline_direction, gaze.shape), gaze)
    summary = {"model": summarise(errors, gaze, config, result["sigma"]),
               "mean_direction_baseline": summarise(baseline_errors, gaze, config),
               "skipped_samples": dataset.skipped + len(dataset) - len(rows)}
    if csv_path is not None:
        masks = subset_masks(gaze, config.front_facing, config.front_facing_degrees)
        with open(csv_path, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["index", "sample", "yaw_deg", "pitch_deg", "pred_yaw_deg", "pred_pitch_deg", "sigma",
                             "error_deg", "baseline_error_deg", *SUBSETS])
            for i, row in enumerate(rows):
                name = dataset.names[row]
                yaw, pitch = np.degrees(dataset.yaw_pitch[row])
                pred_yaw, pred_pitch = np.degrees(result["yaw_pitch"][i])
                writer.writerow([row, name, f"{yaw:.4f}", f"{pitch:.4f}", f"{pred_yaw:.4f}", f"{pred_pitch:.4f}",
                                 f"{result['sigma'][i]:.5f}", f"{errors[i]:.4f}", f"{baseline_errors[i]:.4f}",
                                 *(int(masks[s][i]) for s in SUBSETS)])
    return summary


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, with NaN written as null (strict JSON)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    path.write_text(json.dumps(clean(metrics), indent=2) + "\n")


def format_table(metrics: dict, split: str = "test") -> str:
    """Model beside the mean-direction baseline, per subset, in degrees."""
    model, baseline = metrics[split]["model"], metrics[split]["mean_direction_baseline"]
    lines = [f"{split} angular error (deg) | model | mean direction | samples", "---|---|---|---"]
    for name in SUBSETS:
        lines.append(f"{name} | {model[f'{name}_deg']:.2f} | {baseline[f'{name}_deg']:.2f} | {model[f'{name}_count']}")
    lines.append(f"sigma-error correlation: Pearson {model['sigma_error_pearson']:.3f}, "
                 f"Spearman {model['sigma_error_spearman']:.3f}")
    return "\n".join(lines)
