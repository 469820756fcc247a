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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eval import metrics
from eval.baselines import centre_prior_heatmap
from eval.encoding import encode_batch
from formulations import build_formulation
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


@dataclass(frozen=True)
class Prediction:
    """The model's prediction for a batch of B inputs: heatmaps [B, H, W] (heatmap units; the mean of the K
    samples, what the protocol metrics score), samples [B, K, H, W] (the K individual heatmaps, K = sample_k for a
    diffusion decoder, 1 for a direct one) and in/out probabilities [B]."""

    heatmaps: np.ndarray
    samples: np.ndarray
    inout: np.ndarray


@torch.no_grad()
def predict_batch(model, formulation, config, batch: dict, device: torch.device, autocast=nullcontext) -> Prediction:
    """Encode the batch once, then let the formulation (formulations/, built by `build_formulation(config)`) turn
    the features into heatmaps: the configured sampler, sample_time_steps, ddim_eta, sample_k, eval_from_picture
    for a diffusion decoder; one forward pass for a direct one."""
    features, inout = encode_batch(model, config, batch, device, autocast)
    out = sample_conditioned(formulation, config, formulation.network(model), formulation.conditioning(model, features),
                             batch, device, autocast)
    if "inout_logit" in out:  # a decoder with its own in/out head
        inout = torch.sigmoid(out["inout_logit"])
    return Prediction(out["heatmaps"].cpu().numpy(), out["samples"].cpu().numpy(), inout.cpu().numpy())


def predict_heatmaps(model, formulation, config, batch: dict, device: torch.device,
                     autocast=nullcontext) -> tuple[np.ndarray, np.ndarray]:
    """(heatmaps [B, H, W] in heatmap units, in/out probabilities [B]) of `predict_batch`."""
    prediction = predict_batch(model, formulation, config, batch, device, autocast)
    return prediction.heatmaps, prediction.inout


@torch.no_grad()
def sample_conditioned(formulation, config, network, conditioning: dict, batch: dict, device: torch.device,
                       autocast=nullcontext) -> dict[str, torch.Tensor]:
    """The formulation's sample of a batch from `network` and its `conditioning` (the model's, or an exported graph:
    inference/onnx_runner.py): {"heatmaps" [B, H, W], "samples" [B, K, H, W]} in heatmap units (+ "inout_logit").
    With eval_from_picture the sampling starts from the picture_source heatmap (SDEdit)."""
    # One map per person: a person_independent_scene backbone may be given one image for all the people of a frame.
    batch_size = batch["head_mask"].shape[0]
    start = start_heatmaps(config, batch) if config.eval_from_picture else None
    return formulation.sample(network, conditioning, batch_size, device, autocast, start_heatmap=start)


def start_heatmaps(config, batch: dict) -> torch.Tensor:
    """The eval_from_picture starting heatmaps in [0, 1], [B, 1, H, W] or [H, W] (broadcast to the batch), from the
    named `picture_source`: the centre prior (the same for every input), or the test target heatmap (a diagnostic:
    it hands the model the answer)."""
    if config.picture_source == "ground_truth":
        return batch["heatmap"].float()[:, None]
    return torch.from_numpy(np.asarray(centre_prior_heatmap(config.output_size), dtype=np.float32))


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
    sample_points = {}  # dataset index -> [K, 2]: the argmax point of each of the K sampled heatmaps (samples.npz)
    prior = centre_prior_heatmap(config.output_size)
    formulation = build_formulation(config)
    pool = (ProcessPoolExecutor(config.eval_metric_workers, mp_context=multiprocessing.get_context("spawn"))
            if config.eval_metric_workers > 0 else None)
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            for batch in tqdm(loader, desc=f"evaluate ({protocol})", disable=not progress, leave=False):
                prediction = predict_batch(model, formulation, config, batch, device, autocast)
                heatmaps, inout = prediction.heatmaps, prediction.inout
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
                    sample_points[rows[-1]["index"]] = np.array(
                        [metrics.argmax_point(sample) for sample in prediction.samples[i]], dtype=np.float32)
                    if keep_heatmaps:
                        kept_heatmaps[rows[-1]["index"]] = heatmap.astype(np.float16)
                arguments = (protocol, heatmaps, prior, targets)
                pending.append(pool.submit(batch_metrics, *arguments) if pool else batch_metrics(*arguments))
            scored = [result for part in pending for result in (part.result() if pool else part)]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if gather is not None:
        records = sorted(gather([(row, result, kept_heatmaps.get(row["index"]), sample_points[row["index"]])
                                 for row, result in zip(rows, scored)]), key=lambda record: record[0]["index"])
        rows, scored = [record[0] for record in records], [record[1] for record in records]
        kept_heatmaps = {record[0]["index"]: record[2] for record in records if record[2] is not None}
        sample_points = {record[0]["index"]: record[3] for record in records}
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
        **formulation.summary(), weights=weights, evaluated_weights=evaluated_weights,
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
        write_sample_points(Path(run_dir), rows, sample_points)
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


def write_sample_points(run_dir: Path, rows: list[dict], sample_points: dict) -> None:
    """samples.npz: "index" [N] (the rows of predictions.csv, in order) and "points" [N, K, 2], the argmax point
    (x, y) of each of the K heatmaps sampled per sample, normalised as pred_x / pred_y (K = 1 for a direct decoder):
    what distribution metrics over a generative decoder's samples start from."""
    indices = [row["index"] for row in rows]
    np.savez(run_dir / "samples.npz", index=np.array(indices, dtype=np.int64),
             points=np.stack([sample_points[index] for index in indices]))


def format_table(summary: dict) -> str:
    """The model against the centre prior, one metric per row (n/a where no sample defines the metric)."""

    def cell(value, width):
        return f"{'n/a' if value is None else f'{value:.4f}':>{width}}"

    lines = [f"{'metric':<13}{'model':>10}{'centre prior':>14}"]
    for key in PROTOCOLS[summary["protocol"]]:
        lines.append(f"{key:<13}{cell(summary[key], 10)}{cell(summary['baseline_centre_prior'][key], 14)}")
    lines.append(f"{'inout_ap':<13}{cell(summary['inout_ap'], 10)}")
    averaged = f", mean of K = {summary['sample_k']} samples" if summary.get("sample_k", 1) > 1 else ""
    sampling = (f"{summary['sampler']} with {summary['sample_steps']} steps" if summary.get("sampler") else
                f"direct decoder {summary.get('heatmap_decoder')}, one forward pass")
    lines.append(f"({summary['n_samples']} test samples, {sampling}{averaged}, "
                 f"{summary.get('evaluated_weights', 'model')} weights, protocol {summary['protocol']})")
    return "\n".join(lines)
