"""Distribution metrics (eval/distribution.py) on hand-made point sets whose scores are worked out by hand (arithmetic
in the comments), against scoringrules' energy score and sklearn's calibration curve, and their figures."""
import json
import math

import numpy as np
import pytest
import scoringrules
from PIL import Image
from sklearn.calibration import calibration_curve

from eval.distribution import (annotator_spread, best_of_k_l2, calibration, coverage, distribution_metrics,
                               energy_score, format_table, person_metrics, sample_points, sampled_point_metrics)

A, B = (0.2, 0.5), (0.8, 0.5)  # two modes 0.6 apart
MIDPOINT = (0.5, 0.5)


def copies(point, count: int) -> np.ndarray:
    return np.array([point] * count, dtype=np.float64)


# ---------------------------------------------------------------- energy score


def test_samples_equal_to_the_annotators_score_half_their_mean_pair_distance():
    # Annotators at the corners of a 0.3-0.4-0.5 right triangle. With samples = annotators (K = M = 3):
    # ordered pair distances sum to 2 (0.3 + 0.4 + 0.5) = 2.4, so the first term is 2.4 / 9 and the spread 2.4 / 9:
    # ES = 2.4 / 9 - 2.4 / 18 = 2.4 / 18.
    annotators = np.array([[0.1, 0.1], [0.4, 0.1], [0.1, 0.5]])
    assert energy_score(annotators, annotators) == pytest.approx(2.4 / 18)
    assert best_of_k_l2(annotators, annotators) == 0.0
    assert coverage(annotators, annotators, 0.05) == 1.0


def test_the_annotators_own_points_beat_every_other_sample_set():
    # Strict propriety: the empirical distribution of the annotators minimises the annotator-averaged score.
    rng = np.random.default_rng(0)
    annotators = np.concatenate([copies(A, 3), copies(B, 2)]) + rng.normal(0, 0.01, size=(5, 2))
    best = energy_score(annotators, annotators)
    for _ in range(200):
        other = annotators + rng.normal(0, rng.choice([0.005, 0.05, 0.3]), size=annotators.shape)
        assert energy_score(other, annotators) > best
    assert energy_score(copies(MIDPOINT, 5), annotators) > best


def test_all_samples_at_the_mean_score_the_mean_distance():
    annotators = np.array([A, B])
    for k in (1, 8):  # K identical samples are one deterministic point: no spread term
        assert energy_score(copies(MIDPOINT, k), annotators) == pytest.approx(0.3)
        assert best_of_k_l2(copies(MIDPOINT, k), annotators) == pytest.approx(0.3)
        assert coverage(copies(MIDPOINT, k), annotators, 0.1) == 0.0


def test_two_modes_half_and_half():
    # 4 annotators at A, 4 at B, D = 0.6. Samples 4 at A and 4 at B: first term D / 2 = 0.3, spread
    # 2 * 16 * D / 64 = D / 2, ES = D / 2 - D / 4 = 0.15. All samples at the midpoint or at one mode: D / 2 = 0.3.
    annotators = np.concatenate([copies(A, 4), copies(B, 4)])
    two_modes = np.concatenate([copies(A, 4), copies(B, 4)])
    assert energy_score(two_modes, annotators) == pytest.approx(0.15)
    assert energy_score(copies(MIDPOINT, 8), annotators) == pytest.approx(0.3)
    assert energy_score(copies(A, 8), annotators) == pytest.approx(0.3)
    # The fair estimator divides the pair sum 19.2 by K (K - 1) = 56: ES = 0.3 - 9.6 / 56.
    assert energy_score(two_modes, annotators, fair=True) == pytest.approx(0.3 - 9.6 / 56)
    assert best_of_k_l2(two_modes, annotators) == 0.0 and coverage(two_modes, annotators, 0.05) == 1.0
    assert best_of_k_l2(copies(A, 8), annotators) == pytest.approx(0.3)  # half the annotators 0.6 away
    assert coverage(copies(A, 8), annotators, 0.1) == 0.5


def test_two_modes_split_70_30():
    # 7 of 10 annotators at A, 3 at B, D = 0.6. Samples in the same proportion: first term and spread are both
    # 2 * 0.7 * 0.3 * D = 0.252, ES = 0.252 - 0.126 = P (1 - P) D = 0.126. All at the majority mode: 0.3 * D = 0.18.
    # All at the mean point 0.7 A + 0.3 B (0.18 from A, 0.42 from B): 0.7 * 0.18 + 0.3 * 0.42 = 0.252.
    annotators = np.concatenate([copies(A, 7), copies(B, 3)])
    assert energy_score(np.concatenate([copies(A, 7), copies(B, 3)]), annotators) == pytest.approx(0.126)
    assert energy_score(copies(A, 10), annotators) == pytest.approx(0.18)
    mean_point = 0.7 * np.array(A) + 0.3 * np.array(B)
    assert energy_score(mean_point, annotators) == pytest.approx(0.252)
    assert coverage(mean_point, annotators, 0.1) == 0.0 and coverage(copies(A, 10), annotators, 0.1) == 0.7


def test_k_equal_one_is_the_distance():
    point, annotator = np.array([0.1, 0.2]), np.array([[0.4, 0.6]])  # a 3-4-5 triangle: 0.5 apart
    assert energy_score(point, annotator) == pytest.approx(0.5)
    assert best_of_k_l2(point[None], annotator) == pytest.approx(0.5)
    assert coverage(point, annotator, 0.5) == 1.0 and coverage(point, annotator, 0.49) == 0.0
    # Several annotators: ES and best-of-1 are both the mean distance to them.
    annotators = np.array([[0.4, 0.6], [0.1, 0.3], [0.1, 0.2]])
    assert energy_score(point, annotators) == pytest.approx((0.5 + 0.1 + 0.0) / 3)
    assert best_of_k_l2(point, annotators) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="K >= 2"):
        energy_score(point, annotators, fair=True)


@pytest.mark.parametrize("k, m", [(1, 1), (1, 5), (4, 1), (8, 10), (32, 3)])
def test_energy_score_equals_scoringrules(k, m):
    rng = np.random.default_rng(k * 100 + m)
    samples, annotators = rng.random((k, 2)), rng.random((m, 2))
    expected = np.mean([scoringrules.es_ensemble(y, samples) for y in annotators])  # its default: the V-statistic
    assert energy_score(samples, annotators) == pytest.approx(float(expected), abs=1e-12)
    if k > 1:
        fair = np.mean([scoringrules.es_ensemble(y, samples, estimator="fair") for y in annotators])
        assert energy_score(samples, annotators, fair=True) == pytest.approx(float(fair), abs=1e-12)


def test_coverage_includes_the_border_and_padding_is_ignored():
    samples = np.array([[0.5, 0.5]])
    annotators = np.array([[0.5, 0.75], [0.5, 0.25], [-1.0, -1.0], [-1.0, -1.0]])  # 0.25 away, exactly
    assert coverage(samples, annotators, 0.25) == 1.0
    assert coverage(samples, annotators, 0.2499) == 0.0
    assert energy_score(samples, annotators) == pytest.approx(0.25)
    values = person_metrics(samples, annotators, radii=(0.25, 0.1))
    assert values == {"energy_score": pytest.approx(0.25), "best_of_k_l2": pytest.approx(0.25), "coverage@0.25": 1.0,
                      "coverage@0.1": 0.0}


@pytest.mark.parametrize("samples, annotators, match", [
    (np.zeros((0, 2)), [[0.5, 0.5]], "K >= 1"),
    ([[0.5, np.nan]], [[0.5, 0.5]], "NaN"),
    ([[0.5, 0.5, 0.5]], [[0.5, 0.5]], r"\[K, 2\]"),
    ([[0.5, 0.5]], [[-1.0, -1.0]], "every row is padding"),
])
def test_bad_point_sets_are_refused(samples, annotators, match):
    with pytest.raises(ValueError, match=match):
        energy_score(samples, annotators)
    with pytest.raises(ValueError, match="positive"):
        coverage([[0.5, 0.5]], [[0.5, 0.5]], 0.0)


def test_sample_points_read_each_heatmap_as_the_l2_protocol():
    heatmaps = np.zeros((3, 64, 64))
    heatmaps[0, 10, 20] = heatmaps[1, 63, 0] = 1.0  # the third map is flat: the first cell wins, as numpy's argmax
    assert sample_points(heatmaps).tolist() == [[20 / 64, 10 / 64], [0.0, 63 / 64], [0.0, 0.0]]
    assert sample_points(heatmaps[0]).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\[K, H, W\]"):
        sample_points(np.zeros((1, 1, 4, 4)))


# ---------------------------------------------------------------- calibration


def test_ece_on_a_hand_computed_case():
    # Bin [0, 0.1]: one sample, p 0.05, label 0: |0 - 0.05| = 0.05, weight 1/7.
    # Bin (0.1, 0.2]: two samples, p 0.15, labels 0 and 1: |0.5 - 0.15| = 0.35, weight 2/7.
    # Bin (0.9, 1]: four samples, p 0.95, three in frame: |0.75 - 0.95| = 0.2, weight 4/7.
    # ECE = (0.05 + 0.7 + 0.8) / 7.
    probabilities = [0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95]
    labels = [0, 0, 1, 1, 1, 1, 0]
    result = calibration(probabilities, labels)
    assert result["ece"] == pytest.approx(1.55 / 7)
    diagram = result["reliability_diagram"]
    assert diagram["count"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 4]
    assert diagram["bin_lower"] == pytest.approx([i / 10 for i in range(10)])
    assert diagram["bin_upper"] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert diagram["mean_probability"][:3] == [pytest.approx(0.05), pytest.approx(0.15), None]
    assert diagram["fraction_in_frame"][0] == 0.0 and diagram["fraction_in_frame"][1] == 0.5
    assert diagram["fraction_in_frame"][9] == 0.75 and result["n_samples"] == 7


def test_ece_bins_are_closed_on_the_right_and_a_calibrated_set_scores_zero():
    edges = [0.0, 0.1, 0.1000001, 0.5, 0.9, 1.0]
    assert calibration(edges, [1] * len(edges))["reliability_diagram"]["count"] == [2, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    # A quarter in frame at p = 0.25 and three quarters at p = 0.75: calibrated, ECE 0.
    assert calibration([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0])["ece"] == pytest.approx(0.0)
    # Every person in frame (the GazeFollow test split): ECE is the mean shortfall of the probability from 1.
    assert calibration([0.55, 0.95], [1, 1])["ece"] == pytest.approx((0.45 + 0.05) / 2)


def test_reliability_diagram_equals_sklearn_calibration_curve():
    rng = np.random.default_rng(3)
    probabilities = np.concatenate([rng.random(300), [0.0, 0.1, 0.2, 0.7, 1.0]])
    labels = (rng.random(len(probabilities)) < probabilities ** 2).astype(float)
    result = calibration(probabilities, labels)
    diagram = result["reliability_diagram"]
    fraction, mean_probability = calibration_curve(labels, probabilities, n_bins=10, strategy="uniform")
    assert [v for v in diagram["fraction_in_frame"] if v is not None] == pytest.approx(fraction.tolist())
    assert [v for v in diagram["mean_probability"] if v is not None] == pytest.approx(mean_probability.tolist())
    counts = np.array([c for c in diagram["count"] if c])
    assert result["ece"] == pytest.approx(float((counts * np.abs(fraction - mean_probability)).sum() / counts.sum()))


@pytest.mark.parametrize("probabilities, labels, match", [
    ([0.5, 1.2], [1, 0], r"\[0, 1\]"), ([0.5, -0.1], [1, 0], r"\[0, 1\]"), ([0.5, 0.5], [1, -1], "0 .* or 1"),
    ([0.5], [1, 0], "equal length"), ([], [], "non-empty"),
])
def test_bad_calibration_inputs_are_refused(probabilities, labels, match):
    with pytest.raises(ValueError, match=match):
        calibration(probabilities, labels)


# ---------------------------------------------------------------- the evaluation's entry point


def test_distribution_metrics_average_persons_and_keep_their_own_names():
    padding = [[-1.0, -1.0]] * 3
    samples = [copies(A, 2), np.array([A, B]), copies(MIDPOINT, 2), copies(A, 2)]
    annotators = [
        np.array([A, B, *padding]),  # ES 0.3, best 0.3, coverage@0.1 0.5
        np.array([A, B, *padding]),  # ES 0.15, best 0, coverage 1
        np.array([A, *padding]),  # one annotator: below min_annotators, not scored
        np.array(padding),  # out of frame: not scored
    ]
    result = distribution_metrics(samples, annotators, [0.9, 0.8, 0.7, 0.2], [1, 1, 1, 0])
    assert result["energy_score"] == pytest.approx((0.3 + 0.15) / 2)
    assert result["best_of_k_l2"] == pytest.approx(0.15)
    assert result["coverage@0.1"] == pytest.approx(0.75) and result["coverage@0.05"] == pytest.approx(0.75)
    assert (result["n_persons"], result["n_annotators"], result["sample_k"]) == (2, 4, 2)
    assert result["energy_score_estimator"] == "v_statistic" and result["n_calibration_samples"] == 4
    # Calibration counts every person: bins (0.1, 0.2] label 0, (0.6, 0.7], (0.7, 0.8], (0.8, 0.9] label 1.
    assert result["ece"] == pytest.approx((0.2 + 0.3 + 0.2 + 0.1) / 4)
    assert not {"auc", "min_l2", "avg_l2", "inout_ap"} & set(result)  # never the protocol's names
    json.dumps(result)  # metrics.json holds it as it is
    table = format_table(result)
    assert "energy_score       0.2250" in table and "coverage@0.1       0.7500" in table and "K = 2 samples" in table
    # min_annotators 1 scores the one-annotator person too (ES 0.3 from the midpoint to A).
    assert distribution_metrics(samples, annotators, [0.9, 0.8, 0.7, 0.2], [1, 1, 1, 0],
                                min_annotators=1)["n_persons"] == 3


def test_distribution_metrics_without_a_scored_person_and_bad_inputs():
    result = sampled_point_metrics([copies(A, 1)], [np.array([A])])
    assert result["energy_score"] is None and result["coverage@0.1"] is None and result["n_persons"] == 0
    vat_like = distribution_metrics([copies(A, 1)] * 2, [np.array([A]), np.zeros((0, 2))], [0.9, 0.2], [1, 0])
    assert vat_like["energy_score"] is None and vat_like["ece"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert "energy_score          n/a" in format_table(vat_like)
    with pytest.raises(ValueError, match="same number K"):
        sampled_point_metrics([copies(A, 1), copies(A, 2)], [np.array([A, B])] * 2)
    with pytest.raises(ValueError, match="one entry per person"):
        distribution_metrics([copies(A, 1)], [np.array([A, B])] * 2, [1.0], [1])
    with pytest.raises(ValueError, match="one entry per person"):
        distribution_metrics([], [], [], [])


def test_annotator_spread():
    assert annotator_spread(np.array([A, B])) == pytest.approx(0.3)
    assert annotator_spread(np.array([A, A, [-1.0, -1.0]])) == 0.0


# ---------------------------------------------------------------- figures


class FakeDataset:
    """The two methods of a dataset the distribution figure uses: the image file, and the pixel coordinates."""

    def __init__(self, folder):
        self.folder = folder
        for index in range(3):
            Image.new("RGB", (80, 60), (40 * index, 100, 100)).save(folder / f"{index}.png")

    def image_path(self, relative):
        return self.folder / relative

    def pixel_annotation(self, index, image_size):
        return type("Annotation", (), {"head_box": np.array([10.0, 10.0, 20.0, 20.0]),
                                       "eye_point": np.array([15.0, 15.0])})()


def test_distribution_figures_draw_the_most_ambiguous_persons(tmp_path):
    from eval.figures import most_ambiguous, write_distribution_figures

    persons = [{"index": i, "path": f"{i}.png", "samples": copies(A, 4), "energy_score": 0.1, "coverage@0.1": 1.0,
                "annotators": np.array([A, (0.2 + 0.1 * i, 0.5), (-1.0, -1.0)])} for i in range(3)]
    persons.append({"index": 3, "path": "0.png", "samples": copies(A, 4), "annotators": np.array([(-1.0, -1.0)])})
    assert [p["index"] for p in most_ambiguous(persons, 2)] == [2, 1]  # widest disagreement first; out of frame never
    # The evaluation's distribution_metrics result serves as the calibration (it carries ece and the diagram).
    in_out = distribution_metrics([p["samples"] for p in persons], [p["annotators"] for p in persons],
                                  [0.1, 0.9, 0.8, 0.3], [1, 1, 1, 0])
    summary = write_distribution_figures(tmp_path / "figures", FakeDataset(tmp_path), persons, in_out, count=2)
    assert summary["files"] == ["distribution_samples.png", "reliability.png"] and summary["sample_indices"] == [2, 1]
    for name in summary["files"]:
        with Image.open(tmp_path / "figures" / name) as image:
            assert image.format == "PNG" and math.prod(image.size) > 100_000
