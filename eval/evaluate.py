"""Evaluate a gaze-diffusion model on a test split with its dataset's protocol (metrics.md) and write the results:
GazeFollow for GazeFollow, the VAT protocol for VideoAttentionTarget, GazeFollow plus GOO's grid AUC for GOO.

The conditioning is computed once per image; every sampling step runs only the UNet. Sampling noise is drawn from a
generator forked from the run's seed, so an evaluation is reproducible and leaves the training random stream as it was.
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffusion import resolve_sampler, sample_heatmaps, sample_point_heatmaps
from engine.build import (build_sampling_diffusion, denoiser, heatmap_scaling, point_target, sampling_state_fn,
                          sdedit_start_step)
from eval import metrics
from eval.baselines import centre_prior_heatmap
from eval.encoding import encode_batch
from pretrained.loading import EVALUATED_WEIGHTS

# Each dataset is scored with its published protocol (see /work/shared/reference/metrics.md); `protocol` in
# metrics.json names it. The keys are the per-sample metrics, averaged over the samples that have them.
# Every protocol also reports `heatmap_ap`, the original DiffusionGaze code's heatmap AP (eval.metrics.heatmap_ap),
# beside (not part of) the published metrics.
PROTOCOLS = {
    "gazefollow": ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang", "heatmap_ap"),
    # VAT: AUC on the 64 x 64 grid against the sigma-3 square and L2 to the single point, in-frame samples only.
    "vat": ("auc", "l2", "heatmap_ap"),
    # GOO: the GazeFollow protocol (one annotator per sample), plus GOO's own 5 x 5-grid AUC reported beside it.
    "goo": ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang", "goo_grid_auc", "heatmap_ap"),
}
RANKING_KEY = {"gazefollow": "avg_l2", "vat": "l2", "goo": "avg_l2"}  # the L2 that orders samples in the figures
PROTOCOL_NOTES = {
    "gazefollow": "GazeFollow protocol: AUC at the original image size against every annotator's pixel, min/avg L2 "
                  "and angles of the heatmap argmax, mean over persons; heatmap_ap is the original DiffusionGaze "
                  "code's heatmap AP, not a protocol metric.",
    "vat": "VideoAttentionTarget protocol: AUC on the 64x64 grid against the sigma-3 box and L2 on in-frame "
           "person-frames only; in/out AP over every person-frame.",
    "goo": "GazeFollow protocol on GOO (one annotator per sample); goo_grid_auc is GOO's original 5x5-grid AUC, "
           "not comparable with the GazeFollow AUC.",
}


def sample_metrics(protocol: str, heatmap: np.ndarray, gaze_points: np.ndarray, eye_point: np.ndarray,
                   image_size: tuple[int, int], inout: float) -> dict:
    """The metrics of one sample under `protocol`: {} for an out-of-frame sample (it has no target; only the in/out
    AP counts it). gaze_points [20, 2] normalised with -1 padding, eye_point [2], image_size (width, height)."""
    if inout < 0.5:
        return {}
    if protocol == "vat":
        return {"auc": metrics.vat_auc(heatmap, gaze_points[0]), "l2": metrics.vat_l2(heatmap, gaze_points[0]),
                "heatmap_ap": metrics.heatmap_ap(heatmap, gaze_points[:1])}
    min_l2, avg_l2 = metrics.gazefollow_l2(heatmap, gaze_points)
    min_ang, avg_ang = metrics.angular_error(heatmap, eye_point, gaze_points)
    values = {"auc": metrics.gazefollow_auc(heatmap, gaze_points, image_size), "min_l2": min_l2, "avg_l2": avg_l2,
              "min_ang": min_ang, "avg_ang": avg_ang}
    if protocol == "goo":
        values["goo_grid_auc"] = metrics.goo_grid_auc(heatmap, gaze_points[0])
    values["heatmap_ap"] = metrics.heatmap_ap(heatmap, gaze_points)
    return values


def batch_metrics(protocol: str, heatmaps: np.ndarray, prior: np.ndarray, targets: list[tuple]) -> list[tuple]:
    """(model metrics, centre-prior metrics) of each sample of a batch; targets hold sample_metrics' other arguments.
    A plain function of numpy values so that worker processes can run it (eval_metric_workers)."""
    return [(sample_metrics(protocol, heatmap, *target), sample_metrics(protocol, prior, *target))
            for heatmap, target in zip(heatmaps, targets)]


@torch.no_grad()
def predict_heatmaps(model, diffusion, config, batch: dict, device: torch.device,
                     autocast=nullcontext) -> tuple[np.ndarray, np.ndarray]:
    """Sample heatmaps with `diffusion` (see `build_sampling_diffusion`) and the configured sampler, ddim_eta and
    sample_k (K samples per input, averaged); with eval_from_picture start from the picture_source heatmap (SDEdit).
    Returns (heatmaps [B, H, W] in heatmap units, in/out probabilities [B])."""
    features, inout = encode_batch(model, config, batch, device, autocast)
    heatmaps = sample_conditioned(diffusion, config, denoiser(model, config), model.denoiser_kwargs(features), batch,
                                  device, autocast)
    return heatmaps, inout.cpu().numpy()


@torch.no_grad()
def sample_conditioned(diffusion, config, model_fn, conditioning_kwargs: dict, batch: dict, device: torch.device,
                       autocast=nullcontext) -> np.ndarray:
    """predict_heatmaps' sampling part: heatmaps [B, H, W] (heatmap units) drawn with the configured sampler by
    `model_fn(x_t, t, **conditioning_kwargs)` (the UNet, or an exported graph: inference/onnx_runner.py)."""
    # One map per person: a person_independent_scene backbone may be given one image for all the people of a frame.
    batch_size = batch["head_mask"].shape[0]
    if config.diffusion_target == "point":  # DDIM on the point; the heatmaps are the UNet's last prediction
        check_point_sampling(config)
        with autocast():
            sample = sample_point_heatmaps(diffusion, model_fn, conditioning_kwargs, batch_size, point_target(config),
                                           eta=config.ddim_eta, samples_per_input=config.sample_k,
                                           clip_denoised=config.clip_denoised, device=device)
        return sample.float()[:, 0].cpu().numpy()
    shape = (batch_size, config.unet_inout_channels, config.output_size, config.output_size)
    scaling = heatmap_scaling(config)
    start = {}
    if config.eval_from_picture:
        start = {"start_picture": scaling.to_diffusion(start_heatmaps(config, batch, shape).to(device)),
                 "start_step": sdedit_start_step(diffusion, config.time_noise)}
    with autocast():
        sample = sample_heatmaps(diffusion, model_fn, conditioning_kwargs, shape,
                                 sampler=config.sampler, eta=config.ddim_eta, samples_per_input=config.sample_k,
                                 clip_denoised=config.clip_denoised, device=device,
                                 state_fn=sampling_state_fn(config), **start)
    # point_image: the network's x0 is the [0, 1] target heatmap itself (only its input was scaled).
    heatmaps = (sample.float() if config.diffusion_target == "point_image"
                else scaling.to_heatmap(sample.float()))[:, 0]
    return heatmaps.cpu().numpy()


def check_point_sampling(config) -> None:
    """The point formulation samples with its own DDIM loop: other samplers and SDEdit starts do not apply."""
    if config.sampler not in ("auto", "ddim"):
        raise ValueError(f"sampler {config.sampler!r}: diffusion_target: point samples with DDIM on the point "
                         "(sampler auto or ddim)")
    if config.eval_from_picture or config.compat_original_std_state:
        raise ValueError("eval_from_picture and compat_original_std_state act on a heatmap state; diffusion_target: "
                         "point diffuses the gaze point")


def start_heatmaps(config, batch: dict, shape) -> torch.Tensor:
    """The eval_from_picture starting heatmaps [B, C, H, W] in [0, 1] from the named `picture_source`: the centre
    prior (the same for every input), or the test target heatmap (a diagnostic: it hands the model the answer)."""
    if config.picture_source == "ground_truth":
        return batch["heatmap"].float()[:, None].expand(shape)
    prior = torch.from_numpy(np.asarray(centre_prior_heatmap(config.output_size), dtype=np.float32))
    return prior.expand(shape)


def sampling_summary(config, diffusion) -> dict:
    """How the heatmaps were sampled, for metrics.json (and whether the start picture was the ground truth)."""
    point = config.diffusion_target == "point"
    summary = {"sampler": "ddim" if point else resolve_sampler(diffusion, config.sampler),
               "sample_steps": config.sample_time_steps, "ddim_eta": config.ddim_eta, "sample_k": config.sample_k,
               "diffusion_target": config.diffusion_target}
    for name in ("compat_original_ddim_step", "compat_original_std_state"):
        if getattr(config, name):
            summary[name] = True
    if config.eval_from_picture:
        step = sdedit_start_step(diffusion, config.time_noise)
        summary["start_picture"] = {
            "source": config.picture_source, "time_noise": config.time_noise,
            "start_timestep": int(getattr(diffusion, "timestep_map", range(diffusion.num_timesteps))[step]),
            "diagnostic_only": config.picture_source == "ground_truth"}
    return summary


def evaluate(model, config, loader, device: torch.device, run_dir: Path | None = None, weights: str = "",
             autocast=nullcontext, progress: bool = True, evaluated_weights: str = "model", gather=None,
             record: dict | None = None) -> dict:
    """Predict every test sample, score it with the protocol of the loader's dataset (`dataset.protocol`), and score a
    centre-prior heatmap on the same samples. Writes `metrics.json` and `predictions.csv` (one row per sample, every
    metric) into `run_dir`, and with Debugging_maps or eval_weights the figures of eval/figures.py.

    With eval_metric_workers > 0 the metrics of each batch are computed in worker processes while the model predicts
    the next batches (the full-resolution GazeFollow AUC is the slow part). `evaluated_weights` ("model" or "ema", the
    exponential moving average) is recorded in the summary. Under DDP each rank predicts its shard of the loader and
    `gather` (a list -> every rank's list concatenated) brings every prediction together exactly once, in dataset
    order; the figures are drawn by the rank with a `run_dir`. `record` adds entries to the summary (e.g. the
    options an evaluation changed from the checkpoint's configuration)."""
    dataset = loader.dataset
    protocol = dataset.protocol
    keys = PROTOCOLS[protocol]
    # The figures: with Debugging_maps, eval_weights, or wandb on (logged as images, as the original did); the same
    # on every rank.
    keep_heatmaps = config.Debugging_maps or bool(config.eval_weights) or not config.no_wandb
    draw_figures = run_dir is not None and keep_heatmaps
    was_training = model.training
    model.eval()
    rows, pending, kept_heatmaps = [], [], {}
    prior = centre_prior_heatmap(config.output_size)
    diffusion = build_sampling_diffusion(config)
    pool = (ProcessPoolExecutor(config.eval_metric_workers, mp_context=multiprocessing.get_context("spawn"))
            if config.eval_metric_workers > 0 else None)
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            for batch in tqdm(loader, desc=f"evaluate ({protocol})", disable=not progress, leave=False):
                heatmaps, inout = predict_heatmaps(model, diffusion, config, batch, device, autocast)
                targets = []
                for i, heatmap in enumerate(heatmaps):
                    width, height = (int(v) for v in batch["image_size"][i])
                    targets.append((batch["gaze_points"][i].numpy(), batch["eye_point"][i].numpy(), (width, height),
                                    float(batch["inout"][i])))
                    x, y = metrics.argmax_point(heatmap)
                    rows.append({"index": int(batch["index"][i]), "path": batch["path"][i], "image_width": width,
                                 "image_height": height, "eye_x": float(batch["eye_point"][i][0]),
                                 "eye_y": float(batch["eye_point"][i][1]), "pred_x": x, "pred_y": y,
                                 "n_annotators": int((batch["gaze_points"][i][:, 0] >= 0).sum()),
                                 "inout_label": float(batch["inout"][i]), "inout_score": float(inout[i])})
                    if keep_heatmaps:
                        kept_heatmaps[rows[-1]["index"]] = heatmap.astype(np.float16)
                arguments = (protocol, heatmaps, prior, targets)
                pending.append(pool.submit(batch_metrics, *arguments) if pool else batch_metrics(*arguments))
            scored = [result for part in pending for result in (part.result() if pool else part)]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if gather is not None:
        records = sorted(gather([(row, result, kept_heatmaps.get(row["index"])) for row, result in zip(rows, scored)]),
                         key=lambda record: record[0]["index"])
        rows, scored = [record[0] for record in records], [record[1] for record in records]
        kept_heatmaps = {record[0]["index"]: record[2] for record in records if record[2] is not None}
    seconds = time.perf_counter() - started
    model.train(was_training)
    if not rows:
        raise RuntimeError("the evaluation set is empty: nothing to evaluate")
    prior_values = []
    for row, (values, prior_sample) in zip(rows, scored):
        row.update({key: values.get(key, "") for key in keys})  # "" in the CSV: not defined for this sample
        prior_values.append(prior_sample)
    labels = [row["inout_label"] for row in rows]
    summary = {key: _mean([row[key] for row in rows]) for key in keys}
    # The GazeFollow and GOO test splits label every person in frame: AP over a single class says nothing.
    summary["inout_ap"] = (metrics.inout_ap(labels, [row["inout_score"] for row in rows])
                           if len(set(labels)) > 1 else None)
    summary.update(
        protocol=protocol, protocol_description=PROTOCOL_NOTES[protocol], dataset=type(dataset).__name__,
        dataset_root=str(getattr(dataset, "root", "")), n_samples=len(rows), n_in_frame=int(sum(labels)),
        **sampling_summary(config, diffusion), weights=weights, evaluated_weights=evaluated_weights,
        evaluated_weights_description=EVALUATED_WEIGHTS.get(evaluated_weights, ""),
        seconds=round(seconds, 2), images_per_second=round(len(rows) / max(seconds, 1e-9), 3),
        baseline_centre_prior={key: _mean([values.get(key, "") for values in prior_values]) for key in keys},
    )
    notes = []
    if summary["inout_ap"] is None:
        notes.append("inout_ap is null: every sample of this split is labelled in frame (AP is undefined).")
    if summary.get("start_picture", {}).get("diagnostic_only"):
        notes.append("DIAGNOSTIC ONLY: sampling started from the noised ground-truth heatmap (eval_from_picture with "
                     "picture_source ground_truth); these metrics are not a result of the model.")
    if notes:
        summary["notes"] = " ".join(notes)
    summary.update(record or {})
    if run_dir is not None:
        write_results(Path(run_dir), summary, rows)
        if draw_figures:
            from eval.figures import write_figures  # matplotlib only when figures are asked for

            summary["figures"] = write_figures(Path(run_dir) / "figures", model, config, dataset, rows,
                                               kept_heatmaps, RANKING_KEY[protocol], device, autocast)
            (Path(run_dir) / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _mean(values: list) -> float | None:
    """Mean over the samples that have a value ("" marks none); None when no sample has one."""
    present = [value for value in values if value != ""]
    return float(np.mean(present)) if present else None


def write_results(run_dir: Path, summary: dict, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(run_dir / "predictions.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def format_table(summary: dict) -> str:
    """The model against the centre prior, one metric per row (n/a where no sample defines the metric)."""

    def cell(value, width):
        return f"{'n/a' if value is None else f'{value:.4f}':>{width}}"

    lines = [f"{'metric':<13}{'model':>10}{'centre prior':>14}"]
    for key in PROTOCOLS[summary["protocol"]]:
        lines.append(f"{key:<13}{cell(summary[key], 10)}{cell(summary['baseline_centre_prior'][key], 14)}")
    lines.append(f"{'inout_ap':<13}{cell(summary['inout_ap'], 10)}")
    averaged = f", mean of K = {summary['sample_k']} samples" if summary.get("sample_k", 1) > 1 else ""
    lines.append(f"({summary['n_samples']} test samples, {summary['sampler']} with {summary['sample_steps']} steps"
                 f"{averaged}, {summary.get('evaluated_weights', 'model')} weights, protocol {summary['protocol']})")
    return "\n".join(lines)
