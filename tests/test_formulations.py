"""Formulations as objects (formulations/): the registries the options' choices come from, every combination a
formulation cannot run refused when the configuration is read (before data or model), the K individual samples, no
module outside the formulation room branching on diffusion_target, and docs/formulations.md's sampler and formulation
examples copied out of the page and run (the sampler's also evaluated again by a fresh process)."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import main
from diffusion import SAMPLER_REGISTRY, create_gaussian_diffusion, sample_heatmaps
from engine.config import ConfigError, load_config
from engine.options import OPTIONS
from engine.train import run
from eval.evaluate import predict_batch
from formulations import FORMULATIONS, TrainingTargets, build_formulation
from formulations.direct import DIFFUSION_OPTIONS
from models.build import get_model
from tests.conftest import ROOT
from tests.test_training_step import TINY, batch
from tests.tiny_runs import make_tiny_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")
DOCS = ROOT / "docs" / "formulations.md"


def docs_example(name: str) -> str:
    block = re.search(rf"<!-- {name}-example:start -->\n```python\n(.*?)```\n<!-- {name}-example:end -->",
                      DOCS.read_text(), re.S)
    assert block, f"docs/formulations.md lost its {name} example markers"
    return block.group(1)


# --- registries and checks ------------------------------------------------------------------------------------------

def test_the_registries_give_the_options_their_choices():
    by_name = {option.name: option for option in OPTIONS}
    assert by_name["diffusion_target"].allowed() == ("heatmap", "point", "point_image")
    assert by_name["sampler"].allowed() == ("auto", "ddpm", "ddim", "dpm++2m")
    assert by_name["heatmap_decoder"].allowed() == ("diffusion", "unet_direct", "unet_direct_sigmoid")
    assert set(FORMULATIONS) == {"heatmap", "point", "point_image", "direct"}
    assert FORMULATIONS["point"].samplers() == ("ddim",) and FORMULATIONS["direct"].samplers() == ()
    # The direct decoder refuses every option of the diffusion process (the sampler through its own check).
    group = {option.name for option in OPTIONS if option.group == "Diffusion process"}
    assert group - {"sampler"} <= set(DIFFUSION_OPTIONS) and set(DIFFUSION_OPTIONS) <= set(by_name)


def test_point_with_dpm_solver_is_refused_before_any_data_or_model(tmp_path, capsys, monkeypatch):
    def not_reached(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr("models.build.get_model", not_reached)
    code = main.main(["--device", "cpu", "--source_dataset_dir", str(tmp_path / "no_data"), "--output_dir",
                      str(tmp_path), "--diffusion_target", "point", "--sampler", "dpm++2m"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "'sampler' (command line) = 'dpm++2m'" in err and "'diffusion_target' (command line) = 'point'" in err
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"diffusion_target": "point", "adm_predict_xstart": False}, "x_0 prediction"),
    ({"diffusion_target": "point_image", "adm_learn_sigma": True}, "x_0 prediction"),
    ({"diffusion_target": "point", "adm": False, "adm_predict_xstart": False}, "predict_sthg"),
    ({"diffusion_target": "point", "eval_from_picture": True}, "'eval_from_picture'.*acts on a heatmap state"),
    ({"diffusion_target": "point", "random_sigma": 2.5}, "'random_sigma'.*integer sigma"),
    ({"diffusion_target": "point_image", "noise_changer": True}, "'noise_changer'.*offset noise"),
    ({"diffusion_target": "point", "fix_snr": True}, "'fix_snr'.*abar > 0"),
    ({"diffusion_target": "point", "unet_inout_channels": 2}, "'unet_inout_channels'"),
    ({"diffusion_target": "point", "sampler": "ddpm"}, "'sampler'.*'ddpm' is not a sampler of 'diffusion_target'"),
    ({"sampler": "euler"}, r"'sampler' \(command line\): expected one of \['auto', 'ddpm', 'ddim', 'dpm\+\+2m'\]"),
    ({"diffusion_target": "pixels"}, "'diffusion_target'.*expected one of"),
    ({"heatmap_decoder": "gazelle"}, "'heatmap_decoder'.*expected one of"),
    ({"heatmap_decoder": "unet_direct", "sample_k": 3}, "'sample_k'.*configures the diffusion decoder"),
    ({"heatmap_decoder": "unet_direct", "sampler": "ddim"}, "'sampler'.*runs no sampler"),
    ({"heatmap_decoder": "unet_direct", "diffusion_target": "point"}, "'diffusion_target'.*configures the diffusion"),
    ({"heatmap_decoder": "unet_direct", "extra_loss": "location"}, "'extra_loss'"),
    ({"heatmap_decoder": "unet_direct", "direct_loss": "bce"}, "'direct_loss'.*= 'bce' needs .* probability"),
    ({"direct_loss": "bce"}, "'direct_loss'.*configures a direct heatmap decoder"),
    ({"direct_loss_weight": 3.0}, "'direct_loss_weight'.*configures a direct heatmap decoder"),
])
def test_a_formulation_refuses_what_it_cannot_run_when_the_configuration_is_read(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], {"device": "cpu", **overrides})


def test_what_each_formulation_can_run_is_accepted():
    for overrides in ({"diffusion_target": "point", "sampler": "ddim"}, {"diffusion_target": "point_image",
                      "sampler": "dpm++2m"}, {"heatmap_decoder": "unet_direct_sigmoid", "direct_loss": "bce",
                      "direct_loss_weight": 5.0}, {"heatmap_decoder": "unet_direct", "seed": 4}):
        config = load_config([], {"device": "cpu", **overrides})
        assert build_formulation(config).name == ("direct" if "heatmap_decoder" in overrides
                                                  else config.diffusion_target)


def test_no_module_outside_the_formulation_room_branches_on_diffusion_target():
    allowed = {"engine/options.py", "engine/original_layout.py"}  # the declaration and the compatibility layer
    sources = [*ROOT.glob("*.py")] + [path for top in ROOT.iterdir() if top.is_dir() and not top.is_symlink()
                                      and top.name not in ("formulations", "tests") and not top.name.startswith(".")
                                      for path in top.rglob("*.py")]
    assert len(sources) > 50
    found = sorted(str(path.relative_to(ROOT)) for path in sources
                   if str(path.relative_to(ROOT)) not in allowed and "diffusion_target" in path.read_text())
    assert found == []


# --- what a formulation returns -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["heatmap", "point", "point_image"])
def test_sampling_returns_the_k_samples_and_scores_their_mean(target):
    config = load_config([], {**TINY, "diffusion_target": target, "random_sigma": 2, "sample_k": 3})
    torch.manual_seed(0)
    model = get_model(config).eval()
    with torch.no_grad():  # the UNet's zero-initialised output layer would make every sample the same
        for parameter in model.unet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    torch.manual_seed(1)
    prediction = predict_batch(model, build_formulation(config), config, batch(), torch.device("cpu"))
    assert prediction.samples.shape == (4, 3, 16, 16) and prediction.heatmaps.shape == (4, 16, 16)
    assert not np.allclose(prediction.samples[:, 0], prediction.samples[:, 1])
    np.testing.assert_allclose(prediction.samples.mean(axis=1), prediction.heatmaps, rtol=1e-5, atol=1e-6)
    summary = build_formulation(config).summary()
    assert (summary["formulation"], summary["diffusion_target"], summary["sample_k"]) == (target, target, 3)


def test_training_targets_reach_the_formulation_with_the_per_sample_draws():
    """The heatmap formulation diffuses 2 v h - v of the in-frame rows with the noise `draw` gives for them."""
    config = load_config([], TINY)
    formulation = build_formulation(config)
    model = get_model(config)
    data = batch()
    features = model.encode(data["image"], data["head_mask"], data["face"])
    rows = torch.tensor([0, 3])
    asked = []

    def draw(num_timesteps, shape, offset=0.0):
        asked.append((num_timesteps, shape, offset))
        return torch.tensor([4, 11]), torch.zeros(2, *shape)

    terms = formulation.training_losses(model, features, TrainingTargets(data["heatmap"], data["gaze_points"][:, 0],
                                                                          rows, draw))
    assert asked == [(20, (1, 16, 16), 0.0)]
    torch.testing.assert_close(terms["x_start"], 6 * data["heatmap"][rows].unsqueeze(1) - 3)
    assert terms["loss"].shape == (2,) and terms["pred_xstart"].shape == (2, 1, 16, 16)


# --- docs/formulations.md examples ----------------------------------------------------------------------------------

def test_docs_sampler_example_is_selectable_by_name_and_evaluates_in_a_fresh_process(tmp_path):
    plugin = tmp_path / "ddpm_mean.py"
    plugin.write_text(docs_example("sampler"))
    with pytest.raises(ConfigError, match="'sampler'.*expected one of.*found 'ddpm_mean'"):
        load_config([], {"device": "cpu", "sampler": "ddpm_mean"})  # not registered without its plug-in
    dataset = make_tiny_dataset(tmp_path / "data")
    try:
        config = tiny_config(dataset, tmp_path / "runs", "mean", "--epochs", "1", "--backbone_plugins", str(plugin),
                             "--sampler", "ddpm_mean")
        # The sampler is the example's algorithm: its last state is the chain of posterior means.
        diffusion = create_gaussian_diffusion(steps=10, predict_xstart=True, timestep_respacing="4")
        network = lambda x, t, **kwargs: 0.5 * x + 0.1  # noqa: E731
        noise = torch.randn(2, 1, 4, 4)
        expected = noise
        for i in range(3, -1, -1):
            t = torch.full((2,), i)
            expected = diffusion.p_mean_variance(network, expected, t, clip_denoised=False)["mean"]
        found = sample_heatmaps(diffusion, network, {}, noise.shape, sampler="ddpm_mean", clip_denoised=False,
                                noise=noise)
        torch.testing.assert_close(found, expected)
        trained = run(config)
        assert trained["sampler"] == "ddpm_mean"
    finally:
        SAMPLER_REGISTRY.pop("ddpm_mean", None)
    # A fresh process knows nothing of ddpm_mean: the checkpoint's backbone_plugins are imported to check it.
    result = subprocess.run([sys.executable, "main.py", "--device", "cpu", "--no_wandb", "--num_workers", "0",
                             "--source_dataset_dir", str(dataset), "--output_dir", str(tmp_path / "runs"), "--tag",
                             "again", "--eval_weights", str(tmp_path / "runs" / "mean" / "last.pt")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "runs" / "again" / "metrics.json").read_text())
    assert evaluated["sampler"] == "ddpm_mean"
    for key in ("auc", "min_l2", "avg_l2"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_docs_formulation_example_trains_and_evaluates(tmp_path):
    plugin = tmp_path / "sqrt_heatmap.py"
    plugin.write_text(docs_example("formulation"))
    dataset = make_tiny_dataset(tmp_path / "data")
    try:
        config = tiny_config(dataset, tmp_path / "runs", "sqrt", "--epochs", "1", "--backbone_plugins", str(plugin),
                             "--diffusion_target", "sqrt_heatmap")
        formulation = build_formulation(config)
        assert type(formulation).__name__ == "SqrtHeatmapFormulation"
        heatmap = torch.rand(2, 1, 8, 8)
        torch.testing.assert_close(formulation.to_diffusion(heatmap), 2 * 3.0 * heatmap.sqrt() - 3.0)
        torch.testing.assert_close(formulation.to_heatmap(formulation.to_diffusion(heatmap)), heatmap)
        summary = run(config)
        assert summary["formulation"] == summary["diffusion_target"] == "sqrt_heatmap" and 0 <= summary["auc"] <= 1
        assert json.loads((tmp_path / "runs" / "sqrt" / "metrics.json").read_text())["formulation"] == "sqrt_heatmap"
    finally:
        FORMULATIONS.pop("sqrt_heatmap", None)
