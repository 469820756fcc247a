"""Ideal predictors on the ambiguous synthetic data, without a model: the protocol metrics and the distribution
metrics of a decoder whose samples follow the annotators' two modes, against decoders that predict the mean. The
sanity proof that the distribution metrics see what the protocol metrics cannot (docs/distribution_metrics.md).

    python -m datasets.synthetic --root data/gazefollow_ambiguous --ambiguous_split 0.7
    python -m eval.ideal_predictors --root data/gazefollow_ambiguous [--sample_k 8] [--seed 0] [--figures DIR]

Every predictor is built as a trained model's output would be: 64 x 64 heatmaps (sigma-3 Gaussians, the training
target of datasets/heatmap.py), read by their argmax as the protocols read them.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.errors import DataError
from datasets.gazefollow import GazeFollow
from datasets.heatmap import gaze_heatmap
from datasets.synthetic import AMBIGUOUS_MODES_COLUMNS, AMBIGUOUS_MODES_FILE
from eval import metrics
from eval.distribution import COVERAGE_RADII, coverage_key, person_metrics, sample_points, sampled_point_metrics

OUTPUT_SIZE, SIGMA = 64, 3.0  # the benchmark heatmap grid and target sigma
PROTOCOL_KEYS = ("auc", "min_l2", "avg_l2")
PREDICTORS = {
    "two_mode": "an ideal generative decoder: each of its K samples is the target heatmap at the first object with "
                "probability P, else at the second; the protocol scores one sample (sample_k 1)",
    "mean_heatmap": "P x heatmap(first) + (1 - P) x heatmap(second): the mean heatmap, which an MSE heatmap "
                    "regression (or a 1-step mean estimate) converges to; deterministic (K = 1)",
    "mean_point": "the heatmap at the mean point P x first + (1 - P) x second, which an L2 point regression converges "
                  "to; deterministic (K = 1)",
}


def read_modes(root: Path, split: str = "test") -> dict[tuple[str, int], dict]:
    """The rows of <root>/ambiguous_modes.csv for `split`, keyed by (path, idx), numbers parsed."""
    path = Path(root) / AMBIGUOUS_MODES_FILE
    if not path.is_file():
        raise DataError(f"{path}: no modes file; write the data with python -m datasets.synthetic --ambiguous_split P")
    modes = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != AMBIGUOUS_MODES_COLUMNS:
            raise DataError(f"{path}:1: expected the columns {', '.join(AMBIGUOUS_MODES_COLUMNS)}, found "
                            f"{', '.join(reader.fieldnames or ())}")
        for row in reader:
            if row["split"] == split:
                modes[(row["path"], int(row["idx"]))] = {
                    "first": np.array([float(row["first_x"]), float(row["first_y"])]),
                    "second": np.array([float(row["second_x"]), float(row["second_y"])]),
                    "share": float(row["first_share"])}
    return modes


def _predictions(modes: dict, sample_k: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{predictor: (protocol heatmap [64, 64], sampled heatmaps [K, 64, 64])} of one person."""
    first, second, share = modes["first"], modes["second"], modes["share"]
    targets = {"first": gaze_heatmap(tuple(first), OUTPUT_SIZE, SIGMA), "second": gaze_heatmap(tuple(second),
                                                                                            OUTPUT_SIZE, SIGMA)}
    samples = np.stack([targets["first"] if draw < share else targets["second"] for draw in rng.random(sample_k)])
    mean_heatmap = share * targets["first"] + (1 - share) * targets["second"]
    mean_point = gaze_heatmap(tuple(share * first + (1 - share) * second), OUTPUT_SIZE, SIGMA)
    return {"two_mode": (samples[0], samples), "mean_heatmap": (mean_heatmap, mean_heatmap[None]),
            "mean_point": (mean_point, mean_point[None])}


def compare_ideal_predictors(root: str | Path, sample_k: int = 8, seed: int = 0, figures: str | Path | None = None
                             ) -> dict:
    """The protocol metrics (GazeFollow AUC, min L2, avg L2; eval.metrics) and the sample metrics of
    eval.distribution of the PREDICTORS on the test split of an ambiguous synthetic dataset under `root`.

    Returns {"root", "ambiguous_split", "sample_k", "seed", "n_persons", "predictors": {name: {"description",
    "protocol": {...}, "distribution": {...}}}}. `figures`: a folder for the two-mode predictor's
    distribution_samples.png (eval/figures.py)."""
    if sample_k < 1:
        raise ValueError(f"sample_k must be at least 1, found {sample_k}")
    root = Path(root)
    dataset = GazeFollow(root, split="test")
    modes = read_modes(root)
    rng = np.random.default_rng(seed)
    protocol = {name: [] for name in PREDICTORS}
    samples = {name: [] for name in PREDICTORS}
    annotators, shares, drawn = [], set(), []
    for index in range(len(dataset)):
        annotation = dataset.annotation(index)
        key = (annotation.path, annotation.idx)
        if key not in modes:
            raise DataError(f"{root / AMBIGUOUS_MODES_FILE}: no row for test person {key[0]} idx {key[1]} "
                            f"({dataset.annotation_file}:{annotation.line})")
        shares.add(modes[key]["share"])
        with Image.open(dataset.image_path(annotation.path)) as image:
            image_size = image.size
        points = annotation.gaze_points
        annotators.append(points)
        for name, (heatmap, sampled) in _predictions(modes[key], sample_k, rng).items():
            min_l2, avg_l2 = metrics.gazefollow_l2(heatmap, points)
            protocol[name].append({"auc": metrics.gazefollow_auc(heatmap, points, image_size), "min_l2": min_l2,
                                   "avg_l2": avg_l2})
            samples[name].append(sample_points(sampled))
        drawn.append({"index": index, "path": annotation.path, "annotators": points,
                      "samples": samples["two_mode"][-1],
                      **person_metrics(samples["two_mode"][-1], points, COVERAGE_RADII)})
    results = {}
    for name, description in PREDICTORS.items():
        results[name] = {
            "description": description,
            "protocol": {key: float(np.mean([values[key] for values in protocol[name]])) for key in PROTOCOL_KEYS},
            "distribution": sampled_point_metrics(samples[name], annotators)}
    summary = {"root": str(root), "ambiguous_split": sorted(shares)[0] if len(shares) == 1 else sorted(shares),
               "sample_k": sample_k, "seed": seed, "n_persons": len(dataset), "predictors": results}
    if figures is not None:
        from eval.figures import write_distribution_figures  # matplotlib only when figures are asked for

        summary["figures"] = write_distribution_figures(Path(figures), dataset, drawn)
    return summary


def format_table(summary: dict) -> str:
    """A Markdown table: one row per predictor, the protocol metrics then the distribution metrics."""
    names = [*PROTOCOL_KEYS, "energy_score", "best_of_k_l2", *(coverage_key(r) for r in COVERAGE_RADII)]
    lines = ["| predictor | K | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for predictor, result in summary["predictors"].items():
        values = {**result["protocol"], **result["distribution"]}
        lines.append(f"| {predictor} | {result['distribution']['sample_k']} | "
                     + " | ".join(f"{values[name]:.3f}" for name in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="an ambiguous synthetic dataset (datasets.synthetic "
                                                      "--ambiguous_split P)")
    parser.add_argument("--sample_k", type=int, default=8, help="samples of the two-mode predictor (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the two-mode predictor's draws (default 0)")
    parser.add_argument("--figures", default=None, help="folder for the two-mode predictor's distribution figure")
    parser.add_argument("--json", default=None, help="also write the full results to this JSON file")
    args = parser.parse_args(argv)
    summary = compare_ideal_predictors(args.root, args.sample_k, args.seed, args.figures)
    print(f"{summary['n_persons']} test persons, ambiguous_split {summary['ambiguous_split']}, "
          f"two-mode K = {args.sample_k}, seed {args.seed}")
    print(format_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
