"""Input-independent baseline heatmaps: shape, peak and the claims their docstrings make about the metrics."""
import math

import numpy as np
import pytest
import torch

from datasets.heatmap import gaze_heatmap
from eval.baselines import centre_prior_heatmap, train_prior_heatmap
from eval.metrics import argmax_point, gazefollow_auc, gazefollow_l2, vat_auc


def test_centre_prior_peaks_at_the_image_centre():
    prior = centre_prior_heatmap()
    assert prior.shape == (64, 64) and prior.dtype == np.float32
    assert prior[32, 32] == 1.0
    assert argmax_point(prior) == (0.5, 0.5)
    # One cell away: exp(-1 / (2 * 16^2)); the corner (0, 0) is 32 cells away on both axes: exp(-2048 / 512).
    assert prior[32, 33] == pytest.approx(math.exp(-1 / 512), rel=1e-6)
    assert prior[0, 0] == pytest.approx(math.exp(-4.0), rel=1e-6)


def test_centre_prior_min_l2_is_the_distance_to_the_centre():
    min_l2, avg_l2 = gazefollow_l2(centre_prior_heatmap(), [(0.8, 0.9), (0.2, 0.1)])
    assert min_l2 == pytest.approx(0.5, abs=1e-12)  # sqrt(0.3^2 + 0.4^2) to either annotator
    assert avg_l2 == pytest.approx(0.0, abs=1e-12)  # the mean point is the centre


def test_centre_prior_scores_barely_depend_on_its_width():
    points = [(0.3, 0.8), (0.35, 0.75)]
    wide, narrow = centre_prior_heatmap(sigma=16.0), centre_prior_heatmap(sigma=6.0)
    # Same cell order on the 64 x 64 grid: the VAT AUC is identical.
    assert vat_auc(wide, points[0]) == vat_auc(narrow, points[0])
    # The resize to the image blends neighbouring cells differently for each width: a change in the 4th decimal.
    assert gazefollow_auc(wide, points, (120, 90)) == pytest.approx(gazefollow_auc(narrow, points, (120, 90)),
                                                                    abs=1e-3)


def test_centre_prior_does_not_underflow_to_ties():
    # A truncated or underflowed prior would leave zeros, tying far cells; every distance must keep its own value.
    prior = centre_prior_heatmap()
    offsets = np.arange(64) - 32
    squared_distance = offsets[None, :] ** 2 + offsets[:, None] ** 2
    assert (prior > 0).all()
    assert len(np.unique(prior)) == len(np.unique(squared_distance))


def test_train_prior_is_the_mean_target_and_ignores_out_of_frame_rows():
    points = np.array([(0.2, 0.2), (0.2, 0.2), (0.8, 0.7), (-1.0, -1.0)])
    prior = train_prior_heatmap(points)
    assert prior.dtype == np.float32 and prior.shape == (64, 64)
    # Three in-frame targets, two of them at cell (12, 12) and one at cell (51, 44) (x int(51.2), y int(44.8)); the
    # Gaussians are far apart, so the peaks read 2/3 and 1/3.
    assert prior[12, 12] == pytest.approx(2 / 3, rel=1e-6)
    assert prior[44, 51] == pytest.approx(1 / 3, rel=1e-6)
    expected = (2 * gaze_heatmap((0.2, 0.2)) + gaze_heatmap((0.8, 0.7))) / 3
    np.testing.assert_allclose(prior, expected, rtol=1e-6)


def test_train_prior_groups_points_by_cell_without_changing_the_mean():
    rng = np.random.default_rng(0)
    points = rng.random((200, 2))
    expected = np.mean([gaze_heatmap(tuple(point), size=32, sigma=2.0) for point in points], axis=0)
    prior = train_prior_heatmap(torch.from_numpy(points), size=32, sigma=2.0)
    np.testing.assert_allclose(prior, expected, rtol=1e-5, atol=1e-7)


def test_train_prior_without_in_frame_points_is_an_error():
    with pytest.raises(ValueError, match="in-frame"):
        train_prior_heatmap(np.array([(-1.0, -1.0)]))
