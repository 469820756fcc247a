"""Evaluate a gaze-diffusion model on a test split with the GazeFollow protocol (metrics.md) and write the results.

The conditioning is computed once per image; every sampling step runs only the UNet. Sampling noise is drawn from a
generator forked from the run's seed, so an evaluation is reproducible and leaves the training random stream as it was.
"""
from __future__ import annotations

import csv
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffusion import default_sampler, sample_heatmaps
from engine.build import build_sampling_diffusion, denoiser, heatmap_scaling
from eval import metrics
from eval.baselines import centre_prior_heatmap

PROTOCOL = "gazefollow"
METRIC_KEYS = ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang")


@torch.no_grad()
def predict_heatmaps(model, diffusion, config, batch: dict, device: torch.device,
                     autocast=nullcontext) -> tuple[np.ndarray, np.ndarray]:
    """Sample one heatmap per input with `diffusion` (see `build_sampling_diffusion`): returns (heatmaps [B, H, W] in
    heatmap units, in/out probabilities [B])."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    image, head_mask, face = (batch[key].to(device, memory_format=memory_format) for key in ("image", "head_mask", "face"))
    with autocast():
        features = model.encode(image, head_mask, face)
        inout = torch.sigmoid(model.inout_logit(features["scene_face_feat"]).float())
    shape = (image.shape[0], config.unet_inout_channels, config.output_size, config.output_size)
    with autocast():
        sample = sample_heatmaps(diffusion, denoiser(model, config), model.denoiser_kwargs(features), shape,
                                 clip_denoised=config.clip_denoised, device=device)
    heatmaps = heatmap_scaling(config).to_heatmap(sample.float())[:, 0]
    return heatmaps.cpu().numpy(), inout.cpu().numpy()


def sample_metrics(heatmap: np.ndarray, batch: dict, i: int) -> dict:
    """GazeFollow metrics of one test sample (all annotators; padded points ignored by the metric functions)."""
    points = batch["gaze_points"][i].numpy()
    eye = batch["eye_point"][i].numpy()
    width, height = (int(v) for v in batch["image_size"][i])
    min_l2, avg_l2 = metrics.gazefollow_l2(heatmap, points)
    min_ang, avg_ang = metrics.angular_error(heatmap, eye, points)
    return {"auc": metrics.gazefollow_auc(heatmap, points, (width, height)), "min_l2": min_l2, "avg_l2": avg_l2,
            "min_ang": min_ang, "avg_ang": avg_ang}


def evaluate(model, config, loader, device: torch.device, run_dir: Path | None = None, weights: str = "",
             autocast=nullcontext, progress: bool = True, evaluated_weights: str = "model", gather=None) -> dict:
    """Predict every test sample, compute the per-sample GazeFollow metrics and their means, and the same metrics for
    a centre-prior heatmap on the same samples. Writes `metrics.json` and `predictions.csv` into `run_dir`.
    `evaluated_weights` ("model" or "ema", the exponential moving average) is recorded in the summary.
    Under DDP each rank predicts its shard of the loader and `gather` (a list -> every rank's list concatenated)
    brings every prediction together exactly once, in dataset order."""
    was_training = model.training
    model.eval()
    rows, labels, scores = [], [], []
    prior = centre_prior_heatmap(config.output_size)
    prior_rows = []
    diffusion = build_sampling_diffusion(config)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            heatmaps, inout = predict_heatmaps(model, diffusion, config, batch, device, autocast)
            for i, heatmap in enumerate(heatmaps):
                values = sample_metrics(heatmap, batch, i)
                prior_rows.append(sample_metrics(prior, batch, i))
                x, y = metrics.argmax_point(heatmap)
                width, height = (int(v) for v in batch["image_size"][i])
                rows.append({"index": int(batch["index"][i]), "path": batch["path"][i], "image_width": width,
                             "image_height": height, "eye_x": float(batch["eye_point"][i][0]),
                             "eye_y": float(batch["eye_point"][i][1]), "pred_x": x, "pred_y": y,
                             "n_annotators": int((batch["gaze_points"][i][:, 0] >= 0).sum()),
                             "inout_label": float(batch["inout"][i]), "inout_score": float(inout[i]), **values})
                labels.append(float(batch["inout"][i]))
                scores.append(float(inout[i]))
    if gather is not None:
        records = sorted(gather(list(zip(rows, prior_rows, labels, scores))), key=lambda record: record[0]["index"])
        rows, prior_rows, labels, scores = (list(part) for part in zip(*records)) if records else ([], [], [], [])
    seconds = time.perf_counter() - started
    model.train(was_training)
    if not rows:
        raise RuntimeError("the evaluation set is empty: nothing to evaluate")
    summary = {key: float(np.mean([row[key] for row in rows])) for key in METRIC_KEYS}
    # The GazeFollow test split labels every person in frame: AP over a single class is always 1 and says nothing.
    summary["inout_ap"] = metrics.inout_ap(labels, scores) if len(set(labels)) > 1 else None
    summary.update(
        protocol=PROTOCOL, dataset=config.source_dataset, n_samples=len(rows), sample_steps=config.sample_time_steps,
        sampler=default_sampler(diffusion), weights=weights, evaluated_weights=evaluated_weights, seconds=round(seconds, 2),
        images_per_second=round(len(rows) / max(seconds, 1e-9), 3),
        baseline_centre_prior={key: float(np.mean([row[key] for row in prior_rows])) for key in METRIC_KEYS},
    )
    if summary["inout_ap"] is None:
        summary["notes"] = "inout_ap is null: every sample of this split is labelled in frame (AP is undefined)."
    if run_dir is not None:
        write_results(Path(run_dir), summary, rows)
    return summary


def write_results(run_dir: Path, summary: dict, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(run_dir / "predictions.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def format_table(summary: dict) -> str:
    """The model against the centre prior, one metric per row."""
    lines = [f"{'metric':<10}{'model':>10}{'centre prior':>14}"]
    for key in METRIC_KEYS:
        lines.append(f"{key:<10}{summary[key]:>10.4f}{summary['baseline_centre_prior'][key]:>14.4f}")
    ap = summary["inout_ap"]
    lines.append(f"{'inout_ap':<10}{'n/a' if ap is None else f'{ap:.4f}':>10}")
    lines.append(f"({summary['n_samples']} test samples, {summary['sampler']} with {summary['sample_steps']} steps, "
                 f"protocol {summary['protocol']})")
    return "\n".join(lines)
