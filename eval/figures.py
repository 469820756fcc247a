"""Evaluation figures a researcher can look at: where the model succeeds and fails, and how a heatmap is denoised.

`write_figures` draws, into one folder: `best.png`, `median.png` and `worst.png` (samples ranked by the protocol's
L2; each panel shows the original image, the head box, the ground-truth points, the predicted heatmap overlaid, the
predicted point and the in/out score) and `trajectory_<k>.png` (the predicted x0 heatmap at several sampling steps of
one sample, from noise to the final heatmap; none for a direct decoder, which has no steps). Written with
Matplotlib's Agg backend: no display is needed.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from eval.encoding import encode_batch  # noqa: E402
from formulations import build_formulation  # noqa: E402

TRAJECTORY_SNAPSHOTS = 6  # heatmaps drawn per trajectory, evenly spaced over the sampling steps (the last included)
PANEL_INCHES = 3.2


def ranked_groups(rows: list[dict], ranking_key: str, per_group: int) -> dict[str, list[dict]]:
    """{"best", "median", "worst"}: `per_group` rows each by `ranking_key` (lower is better), among the rows that
    have a value (out-of-frame samples have no L2). Worst is listed worst first."""
    ranked = sorted((row for row in rows if row[ranking_key] != ""), key=lambda row: row[ranking_key])
    if not ranked:
        return {}
    middle = max(0, len(ranked) // 2 - per_group // 2)
    return {"best": ranked[:per_group], "median": ranked[middle : middle + per_group],
            "worst": ranked[::-1][:per_group]}


def _draw_sample(axis, dataset, row: dict, heatmap: np.ndarray, ranking_key: str) -> None:
    index = row["index"]
    with Image.open(dataset.image_path(row["path"])) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    annotation = dataset.pixel_annotation(index, image.size)  # the test split's coordinates, in pixels
    axis.imshow(image)
    axis.imshow(heatmap.astype(np.float32), cmap="jet", alpha=0.45, extent=(0, width, height, 0),
                interpolation="bilinear", vmin=0.0, vmax=max(float(heatmap.max()), 1e-6))
    x_min, y_min, x_max, y_max = annotation.head_box
    axis.add_patch(Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor="white", lw=1.5))
    eye = annotation.eye_point
    for point in annotation.gaze_points:
        axis.plot([eye[0], point[0]], [eye[1], point[1]], color="lime", lw=0.8)
        axis.plot(*point, "o", color="lime", ms=4)
    predicted = (row["pred_x"] * width, row["pred_y"] * height)
    axis.plot([eye[0], predicted[0]], [eye[1], predicted[1]], color="red", lw=1.0)
    axis.plot(*predicted, "x", color="red", ms=7, mew=2)
    auc = row.get("auc", "")
    axis.set_title(f"{Path(row['path']).name}\n{ranking_key} {row[ranking_key]:.3f}"
                   + (f"  auc {auc:.3f}" if auc != "" else "")
                   + f"\nin/out {row['inout_score']:.2f} (label {int(row['inout_label'])})", fontsize=8)
    axis.set_axis_off()


def _group_figure(path: Path, dataset, rows: list[dict], heatmaps: dict, ranking_key: str, title: str) -> None:
    figure, axes = plt.subplots(1, len(rows), figsize=(PANEL_INCHES * len(rows), PANEL_INCHES + 0.6), squeeze=False)
    for axis, row in zip(axes[0], rows):
        _draw_sample(axis, dataset, row, heatmaps[row["index"]], ranking_key)
    figure.suptitle(title + " (green: ground truth, red: predicted argmax, white: head box)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@torch.no_grad()
def denoising_trajectory(model, config, dataset, index: int, device, autocast) -> list[tuple[int, np.ndarray]]:
    """[(step, predicted x0 heatmap)] of sample `index` at TRAJECTORY_SNAPSHOTS evenly spaced sampling steps, noise
    drawn from seed (config.seed, index) so the figure does not depend on the evaluation's random stream; [] for a
    formulation without steps (a direct decoder)."""
    batch = default_collate([dataset[index]])
    features, _ = encode_batch(model, config, batch, device, autocast)
    formulation = build_formulation(config)
    steps = formulation.progressive(formulation.network(model), formulation.conditioning(model, features), device)
    if steps is None:
        return []
    keep = set(np.linspace(formulation.sampling_steps - 1, 0, TRAJECTORY_SNAPSHOTS).round().astype(int).tolist())
    snapshots = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed * 1_000_003 + index)
        with autocast():
            for out in steps:
                if out["step"] in keep:
                    snapshots.append((out["step"], out["pred_xstart"][0, 0].cpu().numpy()))
    return snapshots


def _trajectory_figure(path: Path, dataset, row: dict, snapshots, ranking_key: str, steps: int) -> None:
    figure, axes = plt.subplots(1, len(snapshots) + 1, figsize=(2.4 * (len(snapshots) + 1), 3.0), squeeze=False)
    _draw_sample(axes[0][0], dataset, row, snapshots[-1][1], ranking_key)
    for axis, (step, heatmap) in zip(axes[0][1:], snapshots):
        axis.imshow(heatmap, cmap="jet", vmin=0.0, vmax=1.0)
        axis.set_title(f"x0 after step {steps - step}/{steps}", fontsize=8)
        axis.set_axis_off()
    figure.suptitle("denoising trajectory: the predicted heatmap (x0) as sampling proceeds", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_figures(folder: Path, model, config, dataset, rows: list[dict], heatmaps: dict, ranking_key: str,
                  device, autocast) -> dict:
    """Write the figures described in the module docstring; returns {"folder", "files", "trajectory_indices"}.

    rows: the evaluation's per-sample rows (with "index", "path", "pred_x", "pred_y", "inout_score", the metrics);
    heatmaps: {sample index: predicted heatmap} of at least the ranked samples. Trajectories are drawn for
    debug_trajectories samples evenly spread over the L2 ranking (best to worst); they re-sample those images with
    their own noise, so their final heatmap can differ from the evaluated one.
    """
    was_training = model.training
    model.eval()
    try:
        return _write_figures(folder, model, config, dataset, rows, heatmaps, ranking_key, device, autocast)
    finally:
        model.train(was_training)


def _write_figures(folder, model, config, dataset, rows, heatmaps, ranking_key, device, autocast) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    groups = ranked_groups(rows, ranking_key, config.debug_maps_per_group)
    for name, chosen in groups.items():
        path = folder / f"{name}.png"
        _group_figure(path, dataset, chosen, heatmaps, ranking_key, f"{name} {len(chosen)} samples by {ranking_key}")
        files.append(path.name)
    ranked = sorted((row for row in rows if row[ranking_key] != ""), key=lambda row: row[ranking_key])
    chosen = []
    if ranked and config.debug_trajectories:
        positions = np.linspace(0, len(ranked) - 1, min(config.debug_trajectories, len(ranked))).round().astype(int)
        chosen = [ranked[p] for p in dict.fromkeys(positions.tolist())]
    steps = build_formulation(config).sampling_steps
    drawn = []
    for number, row in enumerate(chosen):
        snapshots = denoising_trajectory(model, config, dataset, row["index"], device, autocast)
        if not snapshots:  # one forward pass (a direct decoder): no trajectory to draw
            break
        path = folder / f"trajectory_{number}.png"
        _trajectory_figure(path, dataset, row, snapshots, ranking_key, steps)
        files.append(path.name)
        drawn.append(row["index"])
    return {"folder": str(folder), "files": files, "trajectory_indices": drawn}
