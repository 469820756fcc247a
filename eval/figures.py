"""Evaluation figures a researcher can look at: where the model succeeds and fails, and how a heatmap is denoised.

`write_figures` draws, into one folder: `best.png`, `median.png` and `worst.png` (samples ranked by the protocol's
L2; each panel shows the original image, the head box, the ground-truth points, the predicted heatmap overlaid, the
predicted point and the in/out score) and `trajectory_<k>.png` (the predicted x0 heatmap at several sampling steps of
one sample, from noise to the final heatmap; none for a direct decoder, which has no steps).
`write_distribution_figures` draws the distribution metrics' figures (eval/distribution.py): `distribution_samples.png`
(the most ambiguous persons, their annotator points and their K sampled points) and `reliability.png` (the in/out
reliability diagram). Written with Matplotlib's Agg backend: no display is needed.
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

from eval.distribution import annotator_spread, coverage_key  # noqa: E402
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


DISTRIBUTION_PERSONS = 4  # persons drawn in distribution_samples.png


def most_ambiguous(persons: list[dict], count: int) -> list[dict]:
    """The `count` persons whose annotators disagree most (eval.distribution.annotator_spread), most first; ties keep
    the given order. Persons without annotators (out of frame) are left out."""
    spreads = [(-annotator_spread(p["annotators"]), number) for number, p in enumerate(persons)
               if (np.asarray(p["annotators"]).reshape(-1, 2) >= 0).all(axis=1).any()]
    return [persons[number] for _, number in sorted(spreads)[:count]]


def _draw_distribution_panel(axis, dataset, person: dict) -> None:
    with Image.open(dataset.image_path(person["path"])) as opened:
        image = opened.convert("RGB")
    size = np.array(image.size, dtype=np.float64)
    annotation = dataset.pixel_annotation(person["index"], image.size)
    annotators = np.asarray(person["annotators"], dtype=np.float64).reshape(-1, 2)
    annotators = annotators[(annotators >= 0).all(axis=1)] * size
    samples = np.asarray(person["samples"], dtype=np.float64).reshape(-1, 2) * size
    axis.imshow(image)
    x_min, y_min, x_max, y_max = annotation.head_box
    axis.add_patch(Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor="white", lw=1.5))
    eye = annotation.eye_point
    for point in annotators:
        axis.plot([eye[0], point[0]], [eye[1], point[1]], color="lime", lw=0.6, alpha=0.7)
    axis.plot(annotators[:, 0], annotators[:, 1], "o", color="lime", ms=4, mec="black", mew=0.5)
    axis.plot(samples[:, 0], samples[:, 1], "x", color="red", ms=7, mew=1.8, alpha=0.8)
    title = f"{Path(person['path']).name}  K = {len(samples)}, {len(annotators)} annotators"
    metrics = [f"{name.replace('energy_score', 'ES')} {person[name]:.3f}"
               for name in ("energy_score", coverage_key(0.1)) if person.get(name) is not None]
    axis.set_title(title + ("\n" + "  ".join(metrics) if metrics else ""), fontsize=8)
    axis.set_axis_off()


def distribution_samples_figure(path: Path, dataset, persons: list[dict]) -> None:
    """One panel per person: the image, head box (white), annotator points (green, with their gaze lines) and the
    sampled points (red crosses). persons: dicts with "index" and "path" (the dataset's), "annotators" [M, 2] and
    "samples" [K, 2] normalised, and optionally "energy_score" and "coverage@0.1" for the title."""
    figure, axes = plt.subplots(1, len(persons), figsize=(PANEL_INCHES * len(persons), PANEL_INCHES + 0.6),
                                squeeze=False)
    for axis, person in zip(axes[0], persons):
        _draw_distribution_panel(axis, dataset, person)
    figure.suptitle("sampled gaze points (red x) against the annotators (green); the most ambiguous persons",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def reliability_figure(path: Path, calibration: dict) -> None:
    """The reliability diagram of eval.distribution.calibration's result: per bin, the fraction of in-frame samples
    against the bin (a bar, drawn at the bin's mean probability as a dot), the diagonal of perfect calibration, and
    the number of samples per bin below."""
    diagram = calibration["reliability_diagram"]
    lower, upper = np.array(diagram["bin_lower"]), np.array(diagram["bin_upper"])
    filled = np.array([value is not None for value in diagram["fraction_in_frame"]])
    accuracy = np.array([value if value is not None else 0.0 for value in diagram["fraction_in_frame"]])
    confidence = np.array([value if value is not None else np.nan for value in diagram["mean_probability"]])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.2, 5.2), sharex=True,
                                         gridspec_kw={"height_ratios": (3, 1)})
    top.bar(lower[filled], accuracy[filled], width=(upper - lower)[filled], align="edge", color="tab:blue",
            edgecolor="black", alpha=0.75, label="fraction in frame")
    top.plot(confidence[filled], accuracy[filled], "o", color="tab:orange", ms=4, label="at the mean probability")
    top.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("fraction in frame")
    top.set_title(f"in/out reliability: ECE {calibration['ece']:.4f} ({sum(diagram['count'])} samples)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(lower, diagram["count"], width=upper - lower, align="edge", color="grey", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("predicted in-frame probability")
    bottom.set_ylabel("samples")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_distribution_figures(folder: Path, dataset, persons: list[dict], calibration: dict | None = None,
                               count: int = DISTRIBUTION_PERSONS) -> dict:
    """Write distribution_samples.png (the `count` most ambiguous of `persons`, see distribution_samples_figure) and,
    given eval.distribution.calibration's result, reliability.png into `folder`.
    Returns {"folder", "files", "sample_indices"}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files, chosen = [], most_ambiguous(persons, count)
    if chosen:
        distribution_samples_figure(folder / "distribution_samples.png", dataset, chosen)
        files.append("distribution_samples.png")
    if calibration is not None:
        reliability_figure(folder / "reliability.png", calibration)
        files.append("reliability.png")
    return {"folder": str(folder), "files": files, "sample_indices": [person["index"] for person in chosen]}
