"""The whole training objective of every shipped thesis configuration equals the original DiffusionGaze code's.

For each of configs/thesis/{main, point_image_diffusion, pointloss, readme_2023} (the last with the original README's
command line) and each of other_loss off / on / with kl_div_loss, with x_loss on and off, one training step of this
project (engine.train.training_step, the configuration parsed from the thesis files and the switches as a user gives
them) on one batch of in-frame and out-of-frame rows, the recipe's tiny network and fixed noise gives the total loss
and each of its terms that the original branch's own `train_one_epoch` computed on the same batch, network and noise
(tests/fixtures/diffusiongaze/objective_*.pt; README.md there says how they were made), to float32 rounding. The rest
of the step is audited against the same run: the gradient norm before clipping, the clipped gradients, the update of
both parameter groups and the EMA. Tests never import the original code.
"""
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

import engine.data
from engine.build import build_formulation
from engine.config import parse_command_line
from engine.ema import ExponentialMovingAverage
from engine.train import training_step
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer
from pretrained.loading import load_init_weights
from tests.conftest import ROOT
from tests.diffusiongaze_recipe import objective_batch, original_state_dict, uniform
from tests.tiny_runs import TO_DIFFUSIONGAZE

FIXTURES = Path(__file__).parent / "fixtures" / "diffusiongaze"
THESIS = ROOT / "configs" / "thesis"
RELATIVE = 1e-5  # float32 rounding
# The recipe's tiny network (ResNets of one block per layer) with the thesis UNet, on the CPU in fp32 / fp64.
NETWORK = ["--list_resnet_scene_layers", "1", "1", "1", "1", "1", "--list_resnet_face_layers", "1", "1", "1", "1", "1",
           "--list_unet_attention_levels", "2", "4", "8",
           "--use_scale_shift_norm", "--conv_resample", "--resblock_updown", "false", "--device", "cpu",
           "--amp", "off", "--init_weights", "", "--no_wandb", "--num_workers", "0"]
README_LINE = ("--watch_wandb --tag example_1 --adm_predict_xstart --diff_normalization 0.1 --norm_std_flag "
               "--random_flag --epochs 30 --lr_schedular --source_dataset gazefollow --is_subsample_test_set").split()
# Thesis configuration -> (fixture, the command line after the YAML files).
CONFIGURATIONS = {"main": ("objective_main", []), "point_image_diffusion": ("objective_point_image_diffusion", []),
                  "pointloss": ("objective_pointloss", []), "readme_2023": ("objective_readme_2023", README_LINE)}
# Fixture case -> the original's switches, as flags.
CASES = {"none_x": ["--x_loss"], "none": ["--x_loss", "false"],
         "location_x": ["--other_loss", "--x_loss"], "location": ["--other_loss", "--x_loss", "false"],
         "kl_x": ["--other_loss", "--kl_div_loss", "--x_loss"], "kl": ["--other_loss", "--kl_div_loss", "--x_loss", "false"]}


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


def load_fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def thesis_config(name: str, case: str, *extra: str):
    files = ["--yaml_diffusion", str(THESIS / name / "diffusion.yaml"), "--yaml_gaze", str(THESIS / name / "gaze.yaml")]
    config, _ = parse_command_line([*files, *CONFIGURATIONS[name][1], *NETWORK, *CASES[case], *extra])
    return config


def the_batch() -> dict:
    inputs = objective_batch()
    rows = len(inputs["inout"])
    gaze_points = torch.full((rows, 20, 2), -1.0, dtype=torch.float64)
    gaze_points[:, 0] = inputs["gaze_point"]
    return {"image": inputs["image"], "face": inputs["face"], "head_mask": inputs["head_mask"],
            "heatmap": inputs["heatmap"], "inout": inputs["inout"].float(), "gaze_points": gaze_points,
            "index": torch.arange(rows), "path": [f"row{i}.jpg" for i in range(rows)], "flip": torch.zeros(rows, dtype=bool)}


def fixed_draws(monkeypatch) -> None:
    """Every module's `diffusion_draws` returns the recipe's timesteps and noise of the requested rows (by index)."""
    inputs = objective_batch()
    original = engine.data.diffusion_draws

    def draws(indices, step, seed, num_timesteps, sample_shape, offset_noise_strength=0.0):
        rows = indices.long()
        size = torch.Size(sample_shape).numel()
        heatmap = inputs["noise"].flatten(1)
        noise = {heatmap.shape[1]: inputs["noise"],  # the heatmap formulation
                 2 + heatmap.shape[1]: torch.cat([inputs["point_noise"], inputs["heatmap_noise"].flatten(1)], 1)}[size]
        return inputs["t"][rows], noise[rows].reshape(len(rows), *sample_shape)

    for module in list(sys.modules.values()):
        if getattr(module, "diffusion_draws", None) is original:
            monkeypatch.setattr(module, "diffusion_draws", draws)


def original_name(name: str) -> str:
    import re

    for pattern, replacement in TO_DIFFUSIONGAZE:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name, count=1)
    return name


def projections(named: dict, names: list, base: int) -> dict:
    """{index in the original's parameter order: the projection the fixture stores} of the given tensors."""
    return {names.index(original_name(key)): float((value.detach().double().flatten() * uniform(
        base + names.index(original_name(key)), (value.numel(),))).sum()) for key, value in named.items()}


def close(ours: float, original: float, what: str, scale: float | None = None) -> None:
    bound = RELATIVE * (abs(original) if scale is None else scale)
    assert abs(ours - original) <= bound, f"{what}: ours {ours!r}, original {original!r}"


def one_step(name: str, case: str, monkeypatch):
    """(config, the losses of one training step, its gradient norm, clipped gradients, updates and EMA updates)."""
    fixture_name = CONFIGURATIONS[name][0]
    fixture = load_fixture(fixture_name)
    config = thesis_config(name, case, "--ema_on")
    torch.manual_seed(0)
    model = get_model(config).double()
    report = load_init_weights(model, original_state_dict(fixture), scheme="diffusiongaze")
    assert report.missing == [] and report.unexpected == []
    model.train()
    fixed_draws(monkeypatch)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, total_steps=config.epochs)  # one step per epoch
    ema = ExponentialMovingAverage(model, config.ema_rate)
    before = {key: value.detach().clone() for key, value in model.named_parameters()}
    norms, grads = [], {}
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        norms.append(float(clip(parameters, max_norm, *args, **kwargs)))
        return norms[-1]

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    optimizer.register_step_pre_hook(lambda *_: grads.update(
        {key: p.grad.clone() for key, p in model.named_parameters() if p.grad is not None}))
    losses = training_step(model, build_formulation(config), the_batch(), config, torch.device("cpu"), optimizer,
                           scheduler,
                           torch.amp.GradScaler("cpu", enabled=False), nullcontext, torch.contiguous_format, step=0,
                           ema=ema)
    names = fixture["parameter_names"]
    delta = {key: p.detach() - before[key] for key, p in model.named_parameters()}
    ema_delta = {key: ema.averaged[key] - before[key] for key in before}
    step = {"grad_norm": norms[0], "grad": projections(grads, names, 400000),
            "delta": projections(delta, names, 500000), "ema": projections(ema_delta, names, 600000),
            "lrs": [group["lr"] for group in optimizer.param_groups]}
    return config, {key: float(value) for key, value in losses.items()}, step, {**fixture["cases"][case],
                                                                               "parameter_names": names}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_thesis_objective_and_training_step_equal_the_original(name, case, monkeypatch, capsys):
    config, losses, step, original = one_step(name, case, monkeypatch)
    # The total and each of its terms.
    close(losses["loss"], float(original["total"]), "total loss")
    close(losses["loss_diffusion"], float(original["diffusion"]), "diffusion term (s_rec_loss)")
    close(losses["loss_inout"], float(original["inout_bce"]), "in/out BCE (Xent_loss)")
    if case.startswith("location"):
        assert config.extra_loss == "location_original"
        close(losses["loss_extra"] / config.location_weight, float(original["location_mse"]), "location term")
    elif case.startswith("kl"):
        assert config.extra_loss == "kl_original"
        close(losses["loss_extra"] / config.kl_weight, float(original["kl"]), "KL term")
    else:
        assert config.extra_loss == "none" and "loss_extra" not in losses
    # The rest of the step: gradient norm before clipping, clipped gradients, the update, the EMA.
    close(step["grad_norm"], float(original["grad_norm"]), "gradient norm before clipping")
    names = original["parameter_names"]
    unused = set(range(len(names))) - set(step["grad"])  # the original's unused attention layer
    assert all(float(original["grad_projection"][i]) == 0 and float(original["delta_projection"][i]) == 0
               for i in unused), [names[i] for i in unused]
    grad_scale = float(original["grad_projection"].abs().max())
    for i, value in step["grad"].items():
        close(value, float(original["grad_projection"][i]), f"clipped gradient of {names[i]}", grad_scale)
    if name == "readme_2023":  # --lr_schedular: the original's first epoch runs the UNet at lr 0 (docs/losses.md)
        assert original["first_step_lrs"] == [0.0, config.lr] and step["lrs"] != original["first_step_lrs"]
        return
    assert step["lrs"] == original["lrs"] == [config.lr, config.lr]
    delta_scale = float(original["delta_projection"].abs().max())
    for key, what in (("delta", "delta_projection"), ("ema", "ema_delta_projection")):
        for i, value in step[key].items():
            close(value, float(original[what][i]), f"{key} of {names[i]}",
                  delta_scale * (1.0 if key == "delta" else 1.0 - config.ema_rate))


@pytest.mark.parametrize("extra, case", [("location", "location_x"), ("kl", "kl_x")])
def test_the_projects_corrected_terms_are_another_objective(extra, case, monkeypatch):
    """`--extra_loss location` / `kl` with the thesis files: this project's terms (in-frame rows, consistent units,
    the [0, 1] maps, the in/out BCE kept), which the fixture tells apart from the original's."""
    name = "pointloss"
    fixture = load_fixture(CONFIGURATIONS[name][0])
    config = thesis_config(name, "none_x", "--extra_loss", extra)
    assert config.extra_loss == extra and config.x_loss and config.diffusion_weight == 1e5
    torch.manual_seed(0)
    model = get_model(config).double()
    load_init_weights(model, original_state_dict(fixture), scheme="diffusiongaze")
    fixed_draws(monkeypatch)
    from engine.train import compute_losses

    with torch.no_grad():
        losses = compute_losses(model, the_batch(), 0, formulation=build_formulation(config), config=config, device=torch.device("cpu"), autocast=nullcontext,
                                memory_format=torch.contiguous_format)
    original = fixture["cases"][case]
    close(float(losses["loss_diffusion"]), float(original["diffusion"]), "the same diffusion term")
    assert abs(float(losses["loss"]) - float(original["total"])) > 0.01 * float(original["total"])
