"""Analyses of trained multi-crop models on the test split, each written as a CSV and a plot (matplotlib, Agg).

- magnification: evaluate with an extra centre crop of input_size - delta pixels (resized back) before the model's
  own crop list, for each delta of `magnification_deltas`; the mean angular error per delta and subset.
- oracle ("better than random"): the same per-sample errors; per sample the best of those crops (an oracle that
  knows the right zoom) beside the expected error of a crop chosen uniformly at random, and each crop alone.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gaze360.build import make_dataset, make_gaze_loader
from gaze360.data import SUBSETS, subset_masks, yaw_pitch_to_gaze
from gaze360.evaluate import angular_error_degrees, predict


def errors_per_delta(model, config, device, autocast, fold=None) -> tuple[np.ndarray, np.ndarray]:
    """[D, N] test angular errors (degrees) for each delta of magnification_deltas, and the [N, 3] labels."""
    errors, gaze = [], None
    for delta in config.magnification_deltas:
        dataset = make_dataset(config, "test", train=False, fold=fold, magnification_delta=delta)
        result = predict(model, make_gaze_loader(dataset, config, train=False), device, autocast, config.target,
                         config.yaw_decoding)
        gaze = dataset.gaze[result["index"]]
        errors.append(angular_error_degrees(yaw_pitch_to_gaze(result["yaw_pitch"]), gaze))
    return np.stack(errors), gaze


def magnification_table(errors: np.ndarray, gaze: np.ndarray, config) -> list[dict]:
    masks = subset_masks(gaze, config.front_facing, config.front_facing_degrees)
    return [{"delta": delta, "crop": config.input_size - delta,
             **{f"{name}_deg": float(errors[i][masks[name]].mean()) if masks[name].any() else float("nan")
                for name in SUBSETS}}
            for i, delta in enumerate(config.magnification_deltas)]


def oracle_table(errors: np.ndarray, gaze: np.ndarray, config) -> list[dict]:
    """Rows: each single crop, the random choice (mean over crops per sample) and the oracle (min per sample)."""
    masks = subset_masks(gaze, config.front_facing, config.front_facing_degrees)

    def row(name: str, per_sample: np.ndarray) -> dict:
        return {"selection": name, **{f"{subset}_deg": float(per_sample[masks[subset]].mean())
                                      if masks[subset].any() else float("nan") for subset in SUBSETS}}

    rows = [row(f"crop {config.input_size - delta}", errors[i]) for i, delta in enumerate(config.magnification_deltas)]
    return rows + [row("random crop", errors.mean(axis=0)), row("oracle (best crop per sample)", errors.min(axis=0))]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_analysis(name: str, model, config, run_dir: Path, device, autocast, fold=None) -> list[dict]:
    """Compute the analysis `name` (magnification / oracle), write <run_dir>/<name>.csv and <name>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors, gaze = errors_per_delta(model, config, device, autocast, fold)
    figure, axis = plt.subplots(figsize=(6, 4))
    if name == "magnification":
        rows = magnification_table(errors, gaze, config)
        for subset in SUBSETS:
            axis.plot([r["delta"] for r in rows], [r[f"{subset}_deg"] for r in rows], marker="o", label=subset)
        axis.set_xlabel(f"delta (centre crop {config.input_size} - delta, pixels)")
        axis.legend()
    elif name == "oracle":
        rows = oracle_table(errors, gaze, config)
        axis.barh([r["selection"] for r in rows], [r["all_360_deg"] for r in rows])
        axis.set_xlabel("angular error, all 360 (deg)")
    else:
        raise ValueError(f"unknown analysis {name!r}; expected 'magnification' or 'oracle'")
    axis.set_ylabel("angular error (deg)" if name == "magnification" else "")
    axis.set_title(f"{name} analysis, test split")
    figure.tight_layout()
    figure.savefig(run_dir / f"{name}.png", dpi=100)
    plt.close(figure)
    write_csv(run_dir / f"{name}.csv", rows)
    for row in rows:
        print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return rows
