"""Metrics on hand-made maps whose scores are worked out by hand (arithmetic in the comments)."""
import math

import numpy as np
import pytest
import torch
from skimage.transform import resize
from sklearn.metrics import roc_auc_score

from eval.metrics import (angular_error, argmax_point, gazefollow_auc, gazefollow_l2, inout_ap, vat_auc,
                          vat_l2)

PADDING = (-1.0, -1.0)


def one_hot(size: int, row: int, col: int) -> np.ndarray:
    heatmap = np.zeros((size, size))
    heatmap[row, col] = 1.0
    return heatmap


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    heatmap = np.zeros((size, size))
    heatmap[top:top + side, left:left + side] = 1.0
    return heatmap


# ---------------------------------------------------------------- argmax_point


def test_argmax_point_reads_col_over_width_and_row_over_height():
    heatmap = np.zeros((4, 8))  # H = 4, W = 8
    heatmap[3, 2] = 1.0
    assert argmax_point(heatmap) == (2 / 8, 3 / 4)


def test_argmax_point_ties_go_to_first_maximum_in_row_major_order():
    heatmap = np.zeros((4, 4))
    heatmap[2, 1] = heatmap[1, 3] = heatmap[2, 0] = 5.0
    # Row-major order visits (1, 3) before (2, 0) and (2, 1).
    assert argmax_point(heatmap) == (3 / 4, 1 / 4)
    assert argmax_point(torch.from_numpy(heatmap).float()) == (3 / 4, 1 / 4)


def test_non_finite_heatmap_is_rejected():
    heatmap = np.zeros((4, 4))
    heatmap[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        argmax_point(heatmap)


def test_heatmap_with_channel_dimension_is_rejected():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        argmax_point(np.zeros((1, 64, 64)))


# ---------------------------------------------------------------- GazeFollow AUC


def test_gazefollow_auc_is_one_when_the_maximum_is_the_annotated_pixel():
    # Image as large as the heatmap: no resize, so the annotated pixel is the unique maximum.
    point = (0.51, 0.26)  # -> col int(32.64) = 32, row int(16.64) = 16
    assert gazefollow_auc(one_hot(64, 16, 32), [point], (64, 64)) == 1.0


def test_gazefollow_auc_is_zero_for_the_inverted_map_and_half_for_a_constant_map():
    point = (0.51, 0.26)
    assert gazefollow_auc(1.0 - one_hot(64, 16, 32), [point], (64, 64)) == 0.0
    assert gazefollow_auc(np.full((64, 64), 0.3), [point], (64, 64)) == 0.5


def test_gazefollow_auc_on_a_hand_computed_4x4_map():
    heatmap = np.arange(16.0).reshape(4, 4)  # value at (row, col) = 4 * row + col
    # Annotators (0.6, 0.3) -> col int(2.4) = 2, row int(1.2) = 1 -> value 6
    #            (0.1, 0.9) -> col int(0.4) = 0, row int(3.6) = 3 -> value 12
    # Positives {6, 12}; negatives the other 14 values. AUC = P(positive > negative):
    #   6 beats 0..5 = 6 negatives; 12 beats 0..11 except 6 = 11 negatives -> (6 + 11) / (2 * 14) = 17 / 28.
    assert gazefollow_auc(heatmap, [(0.6, 0.3), (0.1, 0.9)], (4, 4)) == pytest.approx(17 / 28, abs=1e-12)


def test_gazefollow_auc_clamps_points_on_the_right_and_bottom_edges():
    heatmap = np.arange(16.0).reshape(4, 4)
    # (1.0, 1.0) -> int(4.0) = 4 for both, clamped to col 3, row 3: the maximum 15.
    assert gazefollow_auc(heatmap, [(1.0, 1.0)], (4, 4)) == 1.0


def test_gazefollow_auc_ignores_padding_rows():
    heatmap = np.arange(16.0).reshape(4, 4)
    # Read as a point, (-1, -1) would mark a further positive (int(-4) wraps to the opposite corner) and drop the AUC.
    assert gazefollow_auc(heatmap, [(1.0, 1.0), PADDING, PADDING], (4, 4)) == 1.0


def test_gazefollow_auc_without_any_annotation_is_an_error():
    with pytest.raises(ValueError, match="padding"):
        gazefollow_auc(np.zeros((4, 4)), [PADDING, PADDING], (4, 4))


def test_gazefollow_auc_takes_image_size_as_width_then_height():
    # A 2 x 4 heatmap (H = 2, W = 4) on an image 4 wide and 2 high: no resize.
    heatmap = np.array([[0.0, 1.0, 2.0, 3.0],
                        [4.0, 5.0, 6.0, 7.0]])
    # Point (0.6, 0.3) -> col int(2.4) = 2, row int(0.6) = 0 -> value 2, which beats 0 and 1 of 7 negatives: 2 / 7.
    assert gazefollow_auc(heatmap, [(0.6, 0.3)], (4, 2)) == pytest.approx(2 / 7, abs=1e-12)
    # Read as (height, width) the map would be resized to 4 x 2 and the point land on another cell.
    assert gazefollow_auc(heatmap, [(0.6, 0.3)], (2, 4)) != pytest.approx(2 / 7, abs=1e-3)


def test_gazefollow_auc_resizes_bilinearly_with_half_pixel_centres():
    # 2 x 2 map [[0, 1], [2, 3]] upsampled to 4 x 4 with align_corners=False: destination pixel i samples source
    # coordinate (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to c = 0, 0.25, 0.75, 1; the map is linear
    # (value = x + 2 y), so pixel (row i, col j) = c[j] + 2 c[i]:
    #   0    0.25 0.75 1
    #   0.5  0.75 1.25 1.5
    #   1.5  1.75 2.25 2.5
    #   2    2.25 2.75 3
    # Point (0.3, 0.6) -> col 1, row 2 -> 1.75; 9 of the 15 negatives are smaller, none equal: AUC 9 / 15.
    # (Nearest-neighbour gives 9.5 / 15, align_corners=True 8.5 / 15.)
    heatmap = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert gazefollow_auc(heatmap, [(0.3, 0.6)], (4, 4)) == pytest.approx(9 / 15, abs=1e-12)


def test_gazefollow_auc_matches_scikit_image_bilinear_resize_on_a_non_square_image():
    rng = np.random.default_rng(0)
    heatmap = rng.random((64, 64))
    points = np.array([(0.2, 0.7), (0.25, 0.66), PADDING])
    width, height = 90, 50
    expected_prediction = resize(heatmap, (height, width), order=1, mode="edge", anti_aliasing=False)
    target = np.zeros((height, width))
    target[[35, 33], [18, 22]] = 1.0  # rows int(0.7 * 50), int(0.66 * 50); cols int(0.2 * 90), int(0.25 * 90)
    expected = roc_auc_score(target.ravel(), expected_prediction.ravel())
    assert gazefollow_auc(heatmap, points, (width, height)) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- GazeFollow L2


def test_min_l2_of_a_hit_is_the_offset_inside_the_cell():
    # (0.51, 0.26) lies in cell col 32, row 16, whose argmax point is (32 / 64, 16 / 64) = (0.5, 0.25).
    min_l2, avg_l2 = gazefollow_l2(one_hot(64, 16, 32), [(0.51, 0.26)])
    assert min_l2 == pytest.approx(math.hypot(0.01, 0.01), abs=1e-12)
    assert avg_l2 == pytest.approx(math.hypot(0.01, 0.01), abs=1e-12)


def test_avg_l2_is_the_distance_to_the_mean_point_not_the_mean_distance():
    heatmap = one_hot(64, 32, 32)  # argmax point (0.5, 0.5)
    points = [(0.5, 0.8), (0.5, 0.1), (0.8, 0.5)]
    # Distances 0.3, 0.4, 0.3: min 0.3 (their mean, 1/3, is NOT the avg L2).
    # Mean point (1.8 / 3, 1.4 / 3) = (0.6, 0.4667): distance sqrt(0.1^2 + (0.4667 - 0.5)^2) = sqrt(0.01 + 1/900).
    min_l2, avg_l2 = gazefollow_l2(heatmap, points)
    assert min_l2 == pytest.approx(0.3, abs=1e-12)
    assert avg_l2 == pytest.approx(math.sqrt(0.01 + 1 / 900), abs=1e-12)


def test_l2_ignores_padding_rows():
    heatmap = one_hot(64, 32, 32)
    points = [(0.5, 0.8), (0.5, 0.1), (0.8, 0.5)]
    assert gazefollow_l2(heatmap, points + [PADDING, PADDING]) == gazefollow_l2(heatmap, points)


# ---------------------------------------------------------------- VAT


def test_vat_target_is_a_19x19_square_for_a_point_in_the_middle():
    point = (0.5, 0.5)  # centre cell 32: positives are rows and cols 23..41, 361 cells; 3735 negatives.
    assert vat_auc(square(64, 23, 23, 19), point) == 1.0
    # 17 x 17 inside: 289 positives score 1 and beat every negative, 72 tie with every negative:
    # (289 + 72 / 2) / 361 = 325 / 361.
    assert vat_auc(square(64, 24, 24, 17), point) == pytest.approx(325 / 361, abs=1e-12)
    # 21 x 21 around: every positive scores 1 and ties with 80 of 3735 negatives: (3735 - 80 / 2) / 3735.
    assert vat_auc(square(64, 22, 22, 21), point) == pytest.approx(3695 / 3735, abs=1e-12)


def test_vat_target_is_truncated_at_the_border():
    point = (0.0, 0.0)  # centre cell 0: the square keeps rows and cols 0..9, 100 positives.
    assert vat_auc(square(64, 0, 0, 10), point) == 1.0
    # 9 x 9: 81 positives win, 19 tie with every negative: (81 + 19 / 2) / 100.
    assert vat_auc(square(64, 0, 0, 9), point) == pytest.approx(90.5 / 100, abs=1e-12)


def test_vat_auc_resizes_other_grid_sizes_to_64():
    # Halving with align_corners=False and no antialiasing samples source 2 i + 0.5, the mean of cells 2 i and 2 i + 1,
    # so the 38 x 38 block at rows and cols 46..83 of a 128 grid becomes exactly the 19 x 19 block at 23..41.
    assert vat_auc(square(128, 46, 46, 38), (0.5, 0.5)) == 1.0


def test_vat_metrics_refuse_an_out_of_frame_point():
    with pytest.raises(ValueError, match="in-frame"):
        vat_auc(np.zeros((64, 64)), PADDING)
    with pytest.raises(ValueError, match="in-frame"):
        vat_l2(np.zeros((64, 64)), PADDING)


def test_vat_l2_is_the_distance_from_the_argmax_point():
    # argmax point (16 / 64, 48 / 64) = (0.25, 0.75); gt (0.55, 0.35): sqrt(0.3^2 + 0.4^2) = 0.5.
    assert vat_l2(one_hot(64, 48, 16), (0.55, 0.35)) == pytest.approx(0.5, abs=1e-12)


# ---------------------------------------------------------------- in/out AP


def test_inout_ap_on_four_samples_with_in_frame_as_positive():
    scores = [0.9, 0.8, 0.7, 0.1]
    # labels 1, 0, 1, 0 ranked by score: precision 1/1 at recall 0.5, 2/3 at recall 1 -> 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert inout_ap([1, 0, 1, 0], scores) == pytest.approx(5 / 6, abs=1e-12)
    # Swapping which class is positive changes the answer: precision 1/2 at recall 0.5, 2/4 at recall 1 -> 1/2.
    assert inout_ap([0, 1, 0, 1], scores) == pytest.approx(0.5, abs=1e-12)


def test_inout_ap_depends_only_on_the_order_of_scores():
    logits = torch.tensor([2.2, 1.4, 0.8, -2.0])
    assert inout_ap(torch.tensor([1, 0, 1, 0]), logits) == inout_ap([1, 0, 1, 0], torch.sigmoid(logits))


def test_inout_ap_rejects_labels_that_are_not_zero_or_one():
    with pytest.raises(ValueError, match="0 \\(out of frame\\) or 1"):
        inout_ap([1, -1, 0, 1], [0.9, 0.8, 0.7, 0.1])


# ---------------------------------------------------------------- angular error


def test_angular_error_for_90_and_180_degrees():
    heatmap = one_hot(64, 32, 48)  # argmax (0.75, 0.5): direction (+0.25, 0) from the eye at (0.5, 0.5)
    eye = (0.5, 0.5)
    assert angular_error(heatmap, eye, [(0.5, 0.25)]) == (90.0, 90.0)  # straight up
    assert angular_error(heatmap, eye, [(0.25, 0.5)]) == (180.0, 180.0)  # straight back
    # Two annotators: min 90, mean (90 + 180) / 2 = 135; padding rows do not count.
    min_deg, avg_deg = angular_error(heatmap, eye, [(0.5, 0.25), (0.25, 0.5), PADDING])
    assert (min_deg, avg_deg) == (90.0, 135.0)


def test_angular_error_is_exactly_zero_for_a_perfect_direction():
    # The references' 1e-6 in the denominator would read 0.65 degrees here: norm product 0.25 * 0.0625 = 0.015625,
    # cos = 0.015625 / (0.015625 + 1e-6), arccos = 0.0113 rad.
    heatmap = one_hot(64, 32, 48)
    assert angular_error(heatmap, (0.5, 0.5), [(0.5625, 0.5)]) == (0.0, 0.0)


def test_angular_error_uses_normalised_coordinates():
    # A 32 x 64 heatmap (H, W) with its maximum at row 24, col 48: argmax (0.75, 0.75). From the eye (0.5, 0.5) the
    # direction is (0.25, 0.25), 45 degrees off the annotated x axis; scaled to grid cells it would be (16, 8), 26.6.
    heatmap = np.zeros((32, 64))
    heatmap[24, 48] = 1.0
    min_deg, _ = angular_error(heatmap, (0.5, 0.5), [(0.9, 0.5)])
    assert min_deg == pytest.approx(45.0, abs=1e-12)


def test_zero_length_direction_scores_90_degrees_not_nan():
    heatmap = one_hot(64, 32, 32)  # argmax (0.5, 0.5) on the eye
    assert angular_error(heatmap, (0.5, 0.5), [(0.9, 0.1)]) == (90.0, 90.0)
    # An annotator on the eye, with the argmax elsewhere.
    assert angular_error(one_hot(64, 32, 48), (0.5, 0.5), [(0.5, 0.5)]) == (90.0, 90.0)


# ---------------------------------------------------------------- input types


def test_tensor_and_numpy_inputs_give_the_same_numbers():
    rng = np.random.default_rng(1)
    heatmap = rng.random((64, 64)).astype(np.float32)
    points = np.array([(0.3, 0.6), (0.35, 0.58), PADDING])
    eye = np.array([0.7, 0.2])
    heatmap_t, points_t, eye_t = torch.from_numpy(heatmap), torch.from_numpy(points), torch.from_numpy(eye)
    assert gazefollow_auc(heatmap, points, (80, 60)) == gazefollow_auc(heatmap_t, points_t, (80, 60))
    assert gazefollow_l2(heatmap, points) == gazefollow_l2(heatmap_t, points_t)
    assert vat_auc(heatmap, points[0]) == vat_auc(heatmap_t, points_t[0])
    assert vat_l2(heatmap, points[0]) == vat_l2(heatmap_t, points_t[0])
    assert angular_error(heatmap, eye, points) == angular_error(heatmap_t, eye_t, points_t)
    assert argmax_point(heatmap) == argmax_point(heatmap_t)


@pytest.mark.parametrize("seed", range(5))
def test_binary_auc_equals_sklearn_with_ties_and_at_full_resolution(seed):
    from eval.metrics import binary_auc

    rng = np.random.default_rng(seed)
    shape = (480, 640) if seed == 0 else (37, 53)
    prediction = rng.random(shape)
    if seed % 2:  # coarse values: many ties between positives and negatives
        prediction = np.round(prediction * 4) / 4
    target = np.zeros(shape, dtype=bool)
    target.flat[rng.choice(target.size, size=rng.integers(1, 25), replace=False)] = True
    assert binary_auc(target, prediction) == pytest.approx(roc_auc_score(target.ravel(), prediction.ravel()), abs=1e-12)
    with pytest.raises(ValueError, match="only one class"):
        binary_auc(np.zeros(shape, dtype=bool), prediction)
