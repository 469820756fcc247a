"""The point formulation (diffusion_target: point, formulations/point.py): the renderer, the argmax estimate, the
training loss, and a 1-epoch training + evaluation run on synthetic data. Equality with the original code:
test_diffusiongaze_parity.py."""
import json
import math

import pytest
import torch

from diffusion import create_gaussian_diffusion
from formulations.point import (PointTarget, argmax_points, point_ddim_sample_loop_progressive, point_training_losses,
                                 render_point_heatmaps)
from engine.train import run
from tests.tiny_runs import make_tiny_dataset, tiny_config


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


def test_rendered_heatmap_is_a_cut_gaussian_at_the_rounded_cell_with_peak_one():
    heatmaps = render_point_heatmaps(torch.tensor([[0.3, 0.55], [1.0, 0.5], [3.0, 3.0]], dtype=torch.float64), 8, 1)
    assert heatmaps.shape == (3, 1, 8, 8)
    first = heatmaps[0, 0]  # centre: column round(2.4) = 2, row round(4.4) = 4
    assert first[4, 2] == 1.0
    assert first[4, 3] == pytest.approx(math.exp(-0.5)) and first[3, 3] == pytest.approx(math.exp(-1.0))
    assert first[4, 5] == pytest.approx(math.exp(-4.5)) and first[4, 6] == 0.0  # 3 sigma window
    second = heatmaps[1, 0]  # centre column 8 lies outside the grid: the map is renormalised to peak 1
    assert second[4, 7] == 1.0 and second.max() == 1.0
    assert heatmaps[2].abs().sum() == 0  # the window misses the grid
    with pytest.raises(ValueError, match="int >= 1"):
        render_point_heatmaps(torch.zeros(1, 2), 8, 2.5)


def test_argmax_points_are_x_y_and_take_the_first_maximum():
    heatmaps = torch.zeros(2, 1, 8, 8)
    heatmaps[0, 0, 1, 5] = 1.0
    heatmaps[1, 0, 6, 2] = heatmaps[1, 0, 7, 0] = 1.0
    assert argmax_points(heatmaps).tolist() == [[5 / 8, 1 / 8], [2 / 8, 6 / 8]]


def test_training_loss_renders_the_noisy_point_and_compares_with_the_clean_heatmap():
    diffusion = create_gaussian_diffusion(steps=100, predict_xstart=True)
    target = PointTarget(scale=3.0, heatmap_size=16, sigma=2, std_normalize=False)
    points = torch.tensor([[0.25, 0.75], [0.6, 0.1]], dtype=torch.float64)
    x_start = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    seen = {}

    def model(x, t, **kwargs):
        seen["x"], seen["t"], seen["kwargs"] = x, t, kwargs
        return 0.5 * x

    t = torch.tensor([0, 0])
    terms = point_training_losses(diffusion, model, x_start, points, t, target, model_kwargs={"context": 1},
                                  noise=torch.zeros(2, 2, dtype=torch.float64))
    # At t = 0 with zero noise the point is sqrt(abar_0) (6 p - 3) mapped back: within a cell of p.
    assert torch.equal(seen["x"], render_point_heatmaps(points, 16, 2)) and seen["kwargs"] == {"context": 1}
    torch.testing.assert_close(terms["mse"], ((x_start - 0.5 * seen["x"]) ** 2).mean(dim=(1, 2, 3)))
    assert torch.equal(terms["loss"], terms["mse"]) and torch.equal(terms["x_t"], seen["x"])
    # Far noise is clamped to the grid's edge: a large positive eps puts both coordinates at 1.
    point_training_losses(diffusion, model, x_start, points, torch.tensor([99, 99]), target,
                          noise=torch.full((2, 2), 50.0, dtype=torch.float64))
    assert (argmax_points(seen["x"]) == 15 / 16).all()
    with pytest.raises(ValueError, match="x_0 prediction"):
        point_training_losses(create_gaussian_diffusion(steps=100), model, x_start, points, t, target)


def test_point_sampler_starts_from_the_noise_and_ends_with_the_predicted_heatmap():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="4", predict_xstart=True)
    target = PointTarget(scale=3.0, heatmap_size=16, sigma=2)
    prediction = torch.zeros(1, 1, 16, 16)
    prediction[0, 0, 3, 12] = 0.9
    calls = []

    def model(x, t, **kwargs):
        calls.append(int(t[0]))
        return prediction.expand(x.shape[0], -1, -1, -1)

    steps = list(point_ddim_sample_loop_progressive(diffusion, model, 1, target, noise=torch.zeros(1, 2)))
    assert calls == [99, 66, 33, 0] and len(steps) == 4  # base timesteps of the respaced grid
    torch.testing.assert_close(steps[-1]["pred_xstart"], prediction)
    # The last step lands on abar = 1: the state is the argmax point (12/16, 3/16) in diffusion space.
    torch.testing.assert_close(steps[-1]["sample"], torch.tensor([[12 / 16 * 6 - 3, 3 / 16 * 6 - 3]]))


@pytest.mark.parametrize("target", ["point", "point_image"])
def test_point_targets_train_and_evaluate_end_to_end(tmp_path, target):
    dataset = make_tiny_dataset(tmp_path / "data")
    config = tiny_config(dataset, tmp_path / "out", "point", "--diffusion_target", target, "--epochs", "1",
                         "--random_sigma", "2")
    summary = run(config)
    metrics = json.loads((tmp_path / "out" / "point" / "metrics.json").read_text())
    assert metrics["diffusion_target"] == target and metrics["sampler"] == "ddim"
    assert 0.0 <= summary["auc"] <= 1.0 and summary["n_samples"] == metrics["n_samples"] > 0
    with pytest.raises(ValueError, match="x_0 prediction"):  # a configuration error, before data or model
        tiny_config(dataset, tmp_path / "out", "eps", "--diffusion_target", target, "--epochs", "1",
                    "--random_sigma", "2", "--adm_predict_xstart", "false")


def test_point_target_figures_and_trajectory(tmp_path):
    """Evaluation figures of a point-formulation run: the trajectory uses the point sampler, heatmaps in [0, 1]."""
    dataset = make_tiny_dataset(tmp_path / "data")
    config = tiny_config(dataset, tmp_path / "out", "figures", "--diffusion_target", "point", "--epochs", "1",
                         "--random_sigma", "2", "--Debugging_maps", "--debug_trajectories", "1")
    summary = run(config)
    figures = summary["figures"]
    assert any("trajectory" in name for name in figures["files"]), figures
