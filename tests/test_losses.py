"""The extra heatmap losses of `other_loss` / `kl_div_loss`, checked by hand."""
import math

import pytest
import torch

from engine.config import ConfigError, load_config
from engine.losses import extra_heatmap_loss, heatmap_cross_entropy, heatmap_kl, location_loss, soft_argmax


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


def test_kl_div_loss_needs_other_loss():
    with pytest.raises(ConfigError, match="'kl_div_loss'.*needs 'other_loss'"):
        load_config([], {"kl_div_loss": True})
    assert load_config([], {"kl_div_loss": True, "other_loss": True}).kl_div_loss


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


@pytest.mark.parametrize("kl, location", [(False, "softargmax"), (False, "cross_entropy"), (True, "softargmax")])
def test_extra_heatmap_loss_is_the_selected_term_times_its_weight(kl, location):
    config = load_config([], {"other_loss": True, "kl_div_loss": kl, "location_loss": location,
                              "location_weight": 2.0, "kl_weight": 5.0, "diff_normalization": 3.0})
    generator = torch.Generator().manual_seed(0)
    pred, x_start = torch.randn(3, 8, 8, generator=generator), torch.rand(3, 8, 8, generator=generator) * 6 - 3
    gaze = torch.rand(3, 2, generator=generator)
    if kl:
        expected = 5.0 * heatmap_kl(pred, x_start).mean()
    elif location == "cross_entropy":
        expected = 2.0 * heatmap_cross_entropy(pred, (x_start + 3.0) / 6.0, config.softargmax_beta).mean()
    else:
        expected = 2.0 * location_loss(pred, gaze, config.softargmax_beta).mean()
    assert torch.allclose(extra_heatmap_loss(pred, x_start, gaze, config), expected, rtol=1e-5)


def test_location_loss_needs_other_loss_without_kl():
    with pytest.raises(ConfigError, match="'location_loss'.*needs 'other_loss'.* on and 'kl_div_loss'.* off"):
        load_config([], {"location_loss": "cross_entropy"})
    with pytest.raises(ConfigError, match="'location_loss'"):
        load_config([], {"location_loss": "cross_entropy", "other_loss": True, "kl_div_loss": True})
    assert load_config([], {"location_loss": "cross_entropy", "other_loss": True}).location_loss == "cross_entropy"
