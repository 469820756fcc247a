"""The extra heatmap losses of `other_loss` / `kl_div_loss`, checked by hand."""
import math

import pytest
import torch

from engine.config import ConfigError, load_config
from engine.losses import heatmap_kl, location_loss, soft_argmax


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
