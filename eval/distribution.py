"""Distribution metrics of sampled gaze points, reported beside (never mixed with) the protocol metrics: the energy
score, best-of-K L2 and coverage@r of a person's K sampled points against their annotators, and the calibration of
the in/out probability (expected calibration error and the reliability diagram's data).

Pure functions of numpy arrays; no model. The formulas, and why each choice was made, are in
docs/distribution_metrics.md. Conventions (those of eval/metrics.py):
- Points are normalised (x, y) in [0, 1], x to the right, y down; a distance is sqrt(dx^2 + dy^2) with dx in units
  of the image width and dy in units of its height (the protocol's L2), so a radius r is r of the image's side.
- A sampled point is the argmax of one sampled heatmap read as (col / W, row / H), as the L2 protocol reads it
  (`sample_points`). A direct (regression) decoder gives one point: K = 1.
- Annotator points may carry padding rows (a negative coordinate), which are dropped, as in eval/metrics.py.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.metrics import ArrayLike, _as_annotator_points, _to_float64, argmax_point

COVERAGE_RADII = (0.05, 0.1)  # in normalised image units
ECE_BINS = 10
MIN_ANNOTATORS = 2  # the sample metrics are computed for persons with at least this many annotators
DESCRIPTION = (
    "Distribution metrics (docs/distribution_metrics.md), from the K sampled points of each in-frame person with at "
    "least min_annotators annotators, normalised coordinates: energy_score (the V-statistic 1/K^2 estimator of "
    "E||X-X'||, averaged over annotators, then persons; lower is better), best_of_k_l2 (distance from an annotator "
    "to the nearest sample, same averaging), coverage@r (fraction of annotators with a sample within r, same "
    "averaging); ece: expected calibration error of the in/out probability over every sample, 10 equal-width bins "
    "[0, 0.1], (0.1, 0.2], ..., (0.9, 1], each weighted by its share of the samples; reliability_diagram: each bin's "
    "count, mean probability and fraction in frame.")


def sample_points(heatmaps: ArrayLike) -> np.ndarray:
    """[K, 2] normalised points: the argmax of each of K sampled heatmaps [K, H, W] (one [H, W] map gives K = 1), read
    as the L2 protocol reads a heatmap (eval.metrics.argmax_point)."""
    heatmaps = _to_float64(heatmaps)
    if heatmaps.ndim == 2:
        heatmaps = heatmaps[None]
    if heatmaps.ndim != 3 or len(heatmaps) == 0:
        raise ValueError(f"heatmaps must be K sampled maps [K, H, W] (or one [H, W]), got shape {heatmaps.shape}")
    return np.array([argmax_point(heatmap) for heatmap in heatmaps])


def _as_samples(samples: ArrayLike) -> np.ndarray:
    samples = _to_float64(samples)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.ndim != 2 or samples.shape[1] != 2 or len(samples) == 0:
        raise ValueError(f"samples must be K >= 1 normalised (x, y) points [K, 2], got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("samples contains NaN or infinite values")
    return samples


def _distances(samples: np.ndarray, annotators: np.ndarray) -> np.ndarray:
    """[M, K]: the distance from each annotator point to each sample."""
    return np.linalg.norm(annotators[:, None, :] - samples[None, :, :], axis=-1)


def energy_score(samples: ArrayLike, annotators: ArrayLike, fair: bool = False) -> float:
    """The energy score of K samples against M annotator points, averaged over the annotators (lower is better):

        ES = 1/M sum_j [ 1/K sum_k ||x_k - y_j|| ] - 1/2 S,   S = 1/K^2 sum_k sum_l ||x_k - x_l||

    S is the V-statistic (the score of the forecast the samples make, their empirical distribution): K = 1 gives
    ||x - y|| exactly and K identical samples score as one. `fair` uses the unbiased S = 1/(K(K-1)) sum_{k != l}
    instead (an estimate of the sampler's score as K grows, comparable across K; it needs K >= 2 and can be
    negative); metrics.json reports the V-statistic."""
    samples, annotators = _as_samples(samples), _as_annotator_points(annotators)
    k = len(samples)
    pair_sum = np.linalg.norm(samples[:, None, :] - samples[None, :, :], axis=-1).sum()
    if fair:
        if k < 2:
            raise ValueError("the fair (unbiased) energy score needs K >= 2 samples; with K = 1 use fair=False")
        spread = pair_sum / (k * (k - 1))
    else:
        spread = pair_sum / k**2
    return float(_distances(samples, annotators).mean() - 0.5 * spread)


def best_of_k_l2(samples: ArrayLike, annotators: ArrayLike) -> float:
    """1/M sum_j min_k ||x_k - y_j||: the distance from each annotator point to the nearest sample, averaged over the
    annotators. K = 1: the mean distance from the one point to the annotators (the protocol's min_l2 takes the
    minimum over the annotators instead, and its avg_l2 the distance to their mean point)."""
    return float(_distances(_as_samples(samples), _as_annotator_points(annotators)).min(axis=1).mean())


def coverage(samples: ArrayLike, annotators: ArrayLike, radius: float) -> float:
    """1/M sum_j [min_k ||x_k - y_j|| <= radius]: the fraction of annotator points with a sample within `radius`
    (normalised image units, the border included)."""
    if not radius > 0:
        raise ValueError(f"coverage radius must be positive (normalised image units), found {radius}")
    nearest = _distances(_as_samples(samples), _as_annotator_points(annotators)).min(axis=1)
    return float((nearest <= radius).mean())


def coverage_key(radius: float) -> str:
    """The name of coverage@radius in the results, e.g. "coverage@0.05"."""
    return f"coverage@{radius:g}"


def person_metrics(samples: ArrayLike, annotators: ArrayLike, radii: Sequence[float] = COVERAGE_RADII) -> dict:
    """One person's sample metrics: {"energy_score", "best_of_k_l2", "coverage@<r>" for each radius}."""
    samples, annotators = _as_samples(samples), _as_annotator_points(annotators)
    values = {"energy_score": energy_score(samples, annotators), "best_of_k_l2": best_of_k_l2(samples, annotators)}
    values.update({coverage_key(radius): coverage(samples, annotators, radius) for radius in radii})
    return values


def calibration(probabilities: ArrayLike, labels: ArrayLike, n_bins: int = ECE_BINS) -> dict:
    """Expected calibration error of in/out probabilities against labels (1 in frame, 0 out), and its reliability
    diagram.

    Bins: n_bins equal-width bins with edges numpy.linspace(0, 1, n_bins + 1), closed on the right: [0, 1/n],
    (1/n, 2/n], ..., ((n-1)/n, 1] (the binning of sklearn.calibration.calibration_curve and of Guo et al. 2017).
    ECE = sum_b n_b / N |accuracy_b - confidence_b|, where confidence_b is the mean probability and accuracy_b the
    fraction of in-frame labels among the n_b samples of bin b; an empty bin adds nothing.
    Returns {"ece", "n_samples", "reliability_diagram": {"bin_lower", "bin_upper", "count", "mean_probability",
    "fraction_in_frame"}} (the last two null for an empty bin)."""
    probabilities, labels = _to_float64(probabilities), _to_float64(labels)
    if probabilities.ndim != 1 or probabilities.shape != labels.shape or len(labels) == 0:
        raise ValueError(f"probabilities and labels must be 1-D, non-empty and of equal length, got "
                         f"{probabilities.shape} and {labels.shape}")
    if not np.isfinite(probabilities).all() or (probabilities < 0).any() or (probabilities > 1).any():
        raise ValueError("probabilities must be in/out probabilities in [0, 1] (apply the sigmoid to logits first)")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0 (out of frame) or 1 (in frame), found {np.unique(labels).tolist()}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, found {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], probabilities, side="left")
    count = np.bincount(bins, minlength=n_bins)
    probability_sum = np.bincount(bins, weights=probabilities, minlength=n_bins)
    in_frame_sum = np.bincount(bins, weights=labels, minlength=n_bins)
    filled = count > 0
    confidence = np.divide(probability_sum, count, out=np.zeros(n_bins), where=filled)
    accuracy = np.divide(in_frame_sum, count, out=np.zeros(n_bins), where=filled)
    ece = float((count / len(labels) * np.abs(accuracy - confidence)).sum())
    return {"ece": ece, "n_samples": int(len(labels)), "reliability_diagram": {
        "bin_lower": edges[:-1].tolist(), "bin_upper": edges[1:].tolist(), "count": count.tolist(),
        "mean_probability": [float(v) if f else None for v, f in zip(confidence, filled)],
        "fraction_in_frame": [float(v) if f else None for v, f in zip(accuracy, filled)]}}


def sampled_point_metrics(samples: Sequence[ArrayLike], annotators: Sequence[ArrayLike],
                          inout_labels: ArrayLike | None = None, radii: Sequence[float] = COVERAGE_RADII,
                          min_annotators: int = MIN_ANNOTATORS) -> dict:
    """`person_metrics` averaged over the in-frame persons (label 1; all when `inout_labels` is None) with at least
    `min_annotators` annotators, each person weighing the same; null when no person qualifies. samples[i]: person
    i's K sampled points [K, 2] (the same K for every person); annotators[i]: their annotator points [M_i, 2]
    (padding rows allowed; an out-of-frame person may have none). Also returns the counts behind the means."""
    labels = np.ones(len(samples)) if inout_labels is None else _to_float64(inout_labels)
    if not len(samples) == len(annotators) == len(labels) or not len(labels):
        raise ValueError(f"samples, annotators and inout_labels must have one entry per person (at least one), got "
                         f"{len(samples)}, {len(annotators)} and {len(labels)}")
    if min_annotators < 1:
        raise ValueError(f"min_annotators must be at least 1, found {min_annotators}")
    names = ["energy_score", "best_of_k_l2", *(coverage_key(radius) for radius in radii)]
    scored, sample_k, n_annotators = [], set(), 0
    for person_samples, person_annotators, label in zip(samples, annotators, labels):
        person_samples = _as_samples(person_samples)
        sample_k.add(len(person_samples))
        points = _to_float64(person_annotators).reshape(-1, 2)
        if label != 1 or int((points >= 0).all(axis=1).sum()) < min_annotators:
            continue
        scored.append(person_metrics(person_samples, points, radii))
        n_annotators += len(_as_annotator_points(points))
    if len(sample_k) > 1:
        raise ValueError(f"every person needs the same number K of samples, found K in {sorted(sample_k)}")
    result = {name: (float(np.mean([values[name] for values in scored])) if scored else None) for name in names}
    result.update(sample_k=sample_k.pop(), n_persons=len(scored), n_annotators=n_annotators,
                  min_annotators=min_annotators, coverage_radii=[float(radius) for radius in radii],
                  energy_score_estimator="v_statistic")
    return result


def distribution_metrics(samples: Sequence[ArrayLike], annotators: Sequence[ArrayLike],
                         inout_probabilities: ArrayLike, inout_labels: ArrayLike,
                         radii: Sequence[float] = COVERAGE_RADII, min_annotators: int = MIN_ANNOTATORS) -> dict:
    """The distribution metrics of an evaluation, for metrics.json under its own key (e.g. "distribution"): the
    sample metrics of `sampled_point_metrics` and the in/out `calibration` over every person.

    samples[i]: person i's K sampled points [K, 2] (`sample_points` of their K sampled heatmaps; the same K for every
    person); annotators[i]: their annotator points [M_i, 2] (padding rows allowed); inout_probabilities[i] and
    inout_labels[i]: their in/out probability and label (1 in frame, 0 out)."""
    result = sampled_point_metrics(samples, annotators, inout_labels, radii, min_annotators)
    in_out = calibration(inout_probabilities, inout_labels)
    result.update(ece=in_out["ece"], n_calibration_samples=in_out["n_samples"],
                  reliability_diagram=in_out["reliability_diagram"], description=DESCRIPTION)
    return result


def annotator_spread(annotators: ArrayLike) -> float:
    """The mean distance of a person's annotator points from their mean point: how much the annotators disagree
    (used to pick the most ambiguous persons for the figure)."""
    points = _as_annotator_points(annotators)
    return float(np.linalg.norm(points - points.mean(axis=0), axis=1).mean())


def format_table(result: dict) -> str:
    """`distribution_metrics`' result as printable lines, one metric per row (n/a where no person has a value)."""
    names = ["energy_score", "best_of_k_l2", *(coverage_key(radius) for radius in result["coverage_radii"]), "ece"]
    lines = [f"{'distribution':<15}{'value':>10}"]
    for name in names:
        value = result.get(name)
        lines.append(f"{name:<15}{'n/a' if value is None else f'{value:.4f}':>10}")
    lines.append(f"(K = {result['sample_k']} samples per person, {result['n_persons']} persons with at least "
                 f"{result['min_annotators']} annotators, {result['n_annotators']} annotator points; ECE over "
                 f"{result['n_calibration_samples']} samples)")
    return "\n".join(lines)
