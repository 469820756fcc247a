"""The extra heatmap terms of `extra_loss` (this project's and the original's), checked by hand."""
import math

import pytest
import torch

from engine.config import ConfigError, load_config
from engine.losses import (
    DenoisedRows, extra_term, heatmap_cross_entropy, heatmap_kl, heatmap_kl_original, location_loss,
    location_loss_original, soft_argmax,
)


def test_soft_argmax_is_the_weighted_mean_cell_and_approaches_argmax():
    heatmap = torch.zeros(1, 4, 6)
    heatmap[0, 1, 4] = 1.0  # row 1, column 4
    assert torch.allclose(soft_argmax(heatmap, beta=100.0), torch.tensor([[4.0, 1.0]]), atol=1e-6)
    # beta 0: uniform weights -> the grid centre ((6 - 1) / 2, (4 - 1) / 2)
    assert torch.allclose(soft_argmax(heatmap, beta=0.0), torch.tensor([[2.5, 1.5]]))
    two = torch.zeros(1, 1, 3)
    two[0, 0, 0] = two[0, 0, 2] = 1.0  # equal peaks at columns 0 and 2 -> mean column 1
    assert torch.allclose(soft_argmax(two, beta=50.0), torch.tensor([[1.0, 0.0]]), atol=1e-6)


def test_location_loss_is_squared_distance_in_grid_cells():
    heatmap = torch.zeros(1, 64, 64)
    heatmap[0, 10, 20] = 3.0
    # gaze point (x, y) = (0.5, 0.25) -> (32, 16) cells; peak at (20, 10): 12^2 + 6^2 = 180
    loss = location_loss(heatmap, torch.tensor([[0.5, 0.25]]), beta=100.0)
    assert loss.item() == pytest.approx(180.0, rel=1e-5)


def test_heatmap_kl_is_zero_for_equal_maps_and_matches_the_formula():
    a = torch.randn(2, 5, 5)
    assert torch.allclose(heatmap_kl(a, a), torch.zeros(2), atol=1e-6)
    pred, target = torch.tensor([[[0.0, math.log(3.0)]]]), torch.tensor([[[0.0, 0.0]]])
    # softmax(pred) = (1/4, 3/4), softmax(target) = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert heatmap_kl(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_the_old_kl_switch_without_other_loss_is_an_error_outside_a_diffusiongaze_file():
    with pytest.raises(ConfigError, match="'kl_div_loss' selects a variant of the extra loss 'other_loss', which is off"):
        load_config([], {"kl_div_loss": True})
    assert load_config([], {"kl_div_loss": True, "other_loss": True}).extra_loss == "kl"


def test_heatmap_cross_entropy_matches_the_formula_and_prefers_mass_on_the_target():
    pred = torch.tensor([[[0.0, math.log(3.0)]]])  # softmax = (1/4, 3/4)
    target = torch.tensor([[[1.0, 3.0]]])  # normalised to (1/4, 3/4)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # the entropy: cross-entropy at its minimum
    assert heatmap_cross_entropy(pred, target, beta=1.0).item() == pytest.approx(expected, rel=1e-6)
    # beta scales the logits: beta 2 -> softmax(0, 2 ln 3) = (1/10, 9/10)
    expected = -(0.25 * math.log(0.1) + 0.75 * math.log(0.9))
    assert heatmap_cross_entropy(pred, target, beta=2.0).item() == pytest.approx(expected, rel=1e-6)
    # Two candidate targets, truth on the left: a peak on the truth beats a peak halfway between them, which is
    # exactly what the soft-argmax distance prefers under doubt (its optimum is the centroid).
    truth = torch.zeros(1, 1, 9)
    truth[0, 0, 0] = 1.0
    on_target, halfway = torch.full((1, 1, 9), -3.0), torch.full((1, 1, 9), -3.0)
    on_target[0, 0, 0] = halfway[0, 0, 4] = 3.0
    assert heatmap_cross_entropy(on_target, truth, 2.0) < heatmap_cross_entropy(halfway, truth, 2.0)


def rows(batch: int = 3, size: int = 8, seed: int = 0) -> DenoisedRows:
    generator = torch.Generator().manual_seed(seed)
    pred_x0 = torch.randn(batch, size, size, generator=generator) * 3
    return DenoisedRows(loss=torch.rand(batch, generator=generator), pred_x0=pred_x0,
                        pred_heatmap=(pred_x0 + 3.0) / 6.0,  # the heatmap formulation's map back, v = 3
                        model_output=torch.randn(batch, size, size, generator=generator),
                        in_frame=torch.tensor([True, False, True][:batch]),
                        target=torch.rand(batch, size, size, generator=generator),
                        gaze_point=torch.rand(batch, 2, generator=generator), output_scale=3.0)


@pytest.mark.parametrize("name", ["location", "cross_entropy", "kl", "location_original", "kl_original"])
def test_extra_term_is_the_selected_term_on_its_rows_times_its_weight(name):
    config = load_config([], {"extra_loss": name, "location_weight": 2.0, "kl_weight": 5.0, "diff_normalization": 3.0})
    data = rows()
    inside = data.in_frame
    pred, target, gaze = data.pred_x0[inside], data.target[inside], data.gaze_point[inside]
    assert inside.tolist() == [True, False, True]
    expected = {
        "location": lambda: 2.0 * location_loss(pred, gaze, config.softargmax_beta).mean(),
        "cross_entropy": lambda: 2.0 * heatmap_cross_entropy(pred, target, config.softargmax_beta).mean(),
        "kl": lambda: 5.0 * heatmap_kl((pred + 3.0) / 6.0, target).mean(),  # on the [0, 1] maps
        # The original's terms see every row, out-of-frame ones included.
        "location_original": lambda: 2.0 * location_loss_original(data.model_output, data.gaze_point,
                                                                  config.softargmax_beta),
        "kl_original": lambda: 5.0 * heatmap_kl_original(data.model_output, data.target, 3.0),
    }[name]()
    assert torch.allclose(extra_term(data, config), expected, rtol=1e-6)


def test_the_original_terms_keep_its_units_and_reductions():
    # One row, output peaked at row 10, column 20 of 64 x 64; gaze point (x, y) = (0.5, 0.25).
    output = torch.full((1, 64, 64), -10.0, dtype=torch.float64)
    output[0, 10, 20] = 10.0
    gaze = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    # MSELoss mean over the two coordinates of (row, column) cells against (y, x) in [0, 1]: the unit mismatch.
    expected = ((10.0 - 0.25) ** 2 + (20.0 - 0.5) ** 2) / 2
    assert location_loss_original(output, gaze, beta=100.0).item() == pytest.approx(expected, rel=1e-9)
    # KLDivLoss(batchmean): the sum over cells and rows divided by the rows; (out + s) / 2s before the softmax.
    two = torch.zeros(2, 1, 2, dtype=torch.float64)
    two[0, 0, 1] = 6.0 * math.log(3.0) - 3.0  # (out + 3) / 6 = ln 3 at cell 1, 0.5 at cell 0
    two[0, 0, 0] = 0.0
    target = torch.zeros(2, 1, 2, dtype=torch.float64)
    p = torch.softmax(torch.tensor([0.5, math.log(3.0)], dtype=torch.float64), 0)
    q = torch.softmax(torch.tensor([0.5, 0.5], dtype=torch.float64), 0)
    row0 = float((p * (p / q).log()).sum())
    assert heatmap_kl_original(two, target, scale=3.0).item() == pytest.approx(row0 / 2, rel=1e-9)  # row 1: KL 0


def test_old_switches_read_as_extra_loss_and_their_inconsistent_uses_are_errors():
    assert load_config([], {"other_loss": True}).extra_loss == "location"
    assert load_config([], {"other_loss": True, "location_loss": "cross_entropy"}).extra_loss == "cross_entropy"
    with pytest.raises(ConfigError, match="'location_loss' selects a variant of the extra loss 'other_loss', which is off"):
        load_config([], {"location_loss": "cross_entropy"})
    with pytest.raises(ConfigError, match="'location_loss: cross_entropy'.*'kl_div_loss' selects the KL term"):
        load_config([], {"location_loss": "cross_entropy", "other_loss": True, "kl_div_loss": True})
