"""Issue 3's diffusion options end to end: the ADM/simple formulations through engine/build.py and the model, SNR loss
weights, offset noise, zero terminal SNR (diffusers parity), DPM-Solver++(2M) (diffusers parity), DDIM eta, K samples,
SDEdit starts and the compatibility switches; and, per option, that switching it changes what it should and nothing
else."""
import functools
import json

import numpy as np
import pytest
import torch
from torch import nn

from diffusion import (
    SAMPLER_REGISTRY,
    LossType,
    ModelMeanType,
    ModelVarType,
    create_gaussian_diffusion,
    get_named_beta_schedule,
    mse_loss_weights,
    offset_noise_like,
    rescale_zero_terminal_snr,
    sample_heatmaps,
)
from engine.build import (
    build_formulation,
    build_sampling_diffusion,
    build_training_diffusion,
    denoiser,
    sampling_state_fn,
    sdedit_start_step,
)
from engine.config import ConfigError, load_config
from eval.evaluate import predict_heatmaps
from models.build import get_model
from tests.test_training_step import TINY, batch

pytestmark = pytest.mark.usefixtures("single_thread")


class TinyDenoiser(nn.Module):
    """A fixed random conv net of x, t and an optional conditioning vector (the oracle tests' model function)."""

    def __init__(self, out_channels: int = 1, in_channels: int = 1):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        with torch.no_grad():
            for parameter in self.conv.parameters():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        self.register_buffer("frequencies", torch.linspace(0.01, 0.2, out_channels))
        self.calls = []

    def forward(self, x, t, conditioning=None):
        self.calls.append((x.shape[0], t.clone(), x.clone()))
        out = self.conv(x) + torch.sin(t.float()[:, None] * self.frequencies)[:, :, None, None]
        if conditioning is not None:
            out = out + conditioning[:, :, None, None]
        return torch.tanh(out)


# --- (1) the formulations are live through engine/build.py and the model ------------------------------------------

@pytest.mark.parametrize("overrides,mean,var,loss,rescale", [
    ({}, ModelMeanType.START_X, ModelVarType.FIXED_LARGE, LossType.MSE, False),
    ({"adm_predict_xstart": False}, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE, LossType.MSE, False),
    ({"adm_predict_xstart": False, "adm_predict_v": True}, ModelMeanType.VELOCITY, ModelVarType.FIXED_LARGE,
     LossType.MSE, False),
    ({"adm_learn_sigma": True}, ModelMeanType.START_X, ModelVarType.LEARNED_RANGE, LossType.MSE, False),
    ({"adm_learn_sigma": True, "adm_rescale_learned_sigmas": True}, ModelMeanType.START_X, ModelVarType.LEARNED_RANGE,
     LossType.RESCALED_MSE, False),
    ({"adm_use_kl": True}, ModelMeanType.START_X, ModelVarType.FIXED_LARGE, LossType.RESCALED_KL, False),
    ({"adm_sigma_small": True, "sampler": "ddpm"}, ModelMeanType.START_X, ModelVarType.FIXED_SMALL, LossType.MSE,
     False),
    ({"adm_rescale_timesteps": True}, ModelMeanType.START_X, ModelVarType.FIXED_LARGE, LossType.MSE, True),
    ({"adm": False, "adm_predict_xstart": False}, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE, LossType.MSE,
     False),
    ({"adm": False, "adm_predict_xstart": False, "predict_sthg": "pred_x0"}, ModelMeanType.START_X,
     ModelVarType.FIXED_LARGE, LossType.MSE, False),
])
def test_formulation_options_reach_the_diffusion_and_the_model(overrides, mean, var, loss, rescale):
    config = load_config([], {**TINY, **overrides})
    for diffusion in (build_training_diffusion(config), build_sampling_diffusion(config)):
        assert (diffusion.model_mean_type, diffusion.model_var_type, diffusion.loss_type) == (mean, var, loss)
        assert diffusion.rescale_timesteps is rescale
    unet_out = get_model(config).unet(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long),
                                      context=torch.zeros(1, 3, 128))
    assert unet_out.shape[1] == (2 if var is ModelVarType.LEARNED_RANGE else 1)


def test_learned_sigma_trains_the_vb_term_through_the_variance_channels_only():
    config = load_config([], {**TINY, "adm_learn_sigma": True, "adm_rescale_learned_sigmas": True})
    diffusion = build_training_diffusion(config)
    output = torch.randn(2, 2, 8, 8, requires_grad=True)
    terms = diffusion.training_losses(lambda x, t: output, torch.randn(2, 1, 8, 8), torch.tensor([3, 11]))
    assert set(terms) >= {"mse", "vb", "loss"}
    (gradient,) = torch.autograd.grad(terms["vb"].sum(), output)
    assert gradient[:, 0].abs().max() == 0 and gradient[:, 1].abs().max() > 0


@pytest.mark.parametrize("overrides,message", [
    ({"adm": False}, "'adm_predict_xstart'.*simple formulation"),
    ({"adm": False, "adm_predict_xstart": False, "adm_learn_sigma": True}, "'adm_learn_sigma'.*simple formulation"),
    ({"adm": False, "adm_predict_xstart": False, "adm_sigma_small": True}, "'adm_sigma_small'.*simple formulation"),
    ({"adm_rescale_learned_sigmas": True}, "needs 'adm_learn_sigma'"),
    ({"adm_sigma_small": True}, "'adm_sigma_small'.*only by ancestral"),
    ({"adm_sigma_small": True, "adm_learn_sigma": True, "sampler": "ddpm"}, "learns it"),
    ({"mse_loss_weight_type": "min_snr"}, "expected one of"),
    ({"mse_loss_weight_type": "min_snr_x"}, "min_snr_K with a number K > 0"),
    ({"mse_loss_weight_type": "min_snr_-1"}, "min_snr_K with a number K > 0"),
    ({"mse_loss_weight_type": "p2"}, "expected one of"),
    ({"mse_loss_weight_type": "snr", "adm_use_kl": True}, "variational bound only"),
    ({"fix_snr": True, "adm_predict_xstart": False}, "eps prediction"),
    ({"fix_snr": True, "adm": False, "adm_predict_xstart": False}, "eps prediction"),
    ({"ddim_eta": 1.5}, "in \\[0, 1\\]"),
    ({"ddim_eta": 0.5, "sampler": "dpm++2m"}, "does not sample with DDIM"),
    ({"compat_original_ddim_step": True, "sampler": "dpm++2m"}, "does not sample with DDIM"),
    ({"compat_original_std_state": True, "norm_std_flag": False}, "which is off"),
    ({"sample_k": 0}, "'sample_k'"),
    ({"eval_from_picture": True, "time_noise": 20}, "'time_noise'"),
])
def test_diffusion_option_combinations_that_cannot_work_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], {**TINY, **overrides})


# --- (2) SNR loss weights -----------------------------------------------------------------------------------------

def test_mse_loss_weights_reference_values():
    alpha_bar = np.array([0.8, 0.5, 0.1, 0.0])  # SNR 4, 1, 1/9, 0
    snr = np.array([4.0, 1.0, 1 / 9])
    x0 = ModelMeanType.START_X
    cases = {"constant": [1, 1, 1], "min_snr_2": [2, 1, 1 / 9], "max_snr_2": [4, 2, 2], "trunc_snr": [4, 1, 1],
             "snr": [4, 1, 1 / 9], "inv_snr": [1 / 4, 1, 9]}
    for name, x0_weight in cases.items():
        x0_weight = np.array(x0_weight, dtype=float)
        np.testing.assert_allclose(mse_loss_weights(alpha_bar, name, x0), [*x0_weight, 1.0], rtol=1e-12)
        if name != "constant":
            np.testing.assert_allclose(mse_loss_weights(alpha_bar, name, ModelMeanType.EPSILON),
                                       [*(x0_weight / snr), 1.0], rtol=1e-12)
            np.testing.assert_allclose(mse_loss_weights(alpha_bar, name, ModelMeanType.VELOCITY),
                                       [*(x0_weight / (snr + 1)), 1.0], rtol=1e-12)
    # Min-SNR-5 on eps is min(SNR, 5) / SNR (Hang et al. 2023), finite and 1 at SNR = 0.
    np.testing.assert_allclose(mse_loss_weights(alpha_bar, "min_snr_5", ModelMeanType.EPSILON), [1, 1, 1, 1])


@pytest.mark.parametrize("weight_type", ["min_snr_5", "max_snr_0.5", "trunc_snr", "snr", "inv_snr"])
def test_weighted_losses_are_the_same_objective_for_every_target(weight_type):
    """A network with a given x0 error has the same weighted loss whether it predicts x0, eps or v."""
    torch.manual_seed(0)
    x_start, noise, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.tensor([0, 30, 60, 99])
    x0_guess = x_start + 0.3 * torch.randn_like(x_start)
    losses = []
    for mean in (ModelMeanType.START_X, ModelMeanType.EPSILON, ModelMeanType.VELOCITY):
        diffusion = create_gaussian_diffusion(steps=100, predict_xstart=mean is ModelMeanType.START_X,
                                              predict_v=mean is ModelMeanType.VELOCITY, mse_loss_weight_type=weight_type)
        x_t = diffusion.q_sample(x_start, t, noise)
        eps_guess = diffusion._predict_eps_from_xstart(x_t, t, x0_guess)
        output = {ModelMeanType.START_X: x0_guess, ModelMeanType.EPSILON: eps_guess,
                  ModelMeanType.VELOCITY: diffusion._predict_v(x0_guess, t, eps_guess)}[mean]
        losses.append(diffusion.training_losses(lambda x, s, out=output: out, x_start, t, noise=noise)["loss"])
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(losses[2], losses[0], rtol=2e-4, atol=1e-6)


# --- (3) offset noise and zero terminal SNR ------------------------------------------------------------------------

def test_offset_noise_shifts_each_sample_and_channel_by_one_delta():
    torch.manual_seed(0)
    x = torch.zeros(4000, 2, 8, 8)
    means = offset_noise_like(x, 0.5).mean(dim=(2, 3))
    # Var of a channel mean: 1 / 64 from eps plus 0.25 from the shared delta.
    assert means.var().item() == pytest.approx(1 / 64 + 0.25, rel=0.05)
    assert offset_noise_like(x, 0.0).mean(dim=(2, 3)).var().item() == pytest.approx(1 / 64, rel=0.05)


def test_training_draws_offset_noise_only_with_a_strength():
    diffusion = create_gaussian_diffusion(steps=50, predict_xstart=True, offset_noise_strength=0.7)
    x_start, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 20, 40])
    model = TinyDenoiser()
    torch.manual_seed(4)
    drawn = diffusion.training_losses(model, x_start, t)["loss"]
    torch.manual_seed(4)
    expected = diffusion.training_losses(model, x_start, t, noise=offset_noise_like(x_start, 0.7))["loss"]
    torch.testing.assert_close(drawn, expected, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_zero_terminal_snr_matches_diffusers(schedule):
    scheduling_ddim = pytest.importorskip("diffusers.schedulers.scheduling_ddim")
    betas = get_named_beta_schedule(schedule, 1000)
    ours = rescale_zero_terminal_snr(betas)
    theirs = scheduling_ddim.rescale_zero_terminal_snr(torch.from_numpy(betas)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    alpha_bar = np.cumprod(1 - ours)
    assert alpha_bar[-1] == 0 and ours[-1] == 1
    assert alpha_bar[0] == pytest.approx(1 - betas[0], rel=1e-12)


def test_zero_terminal_snr_needs_x0_or_v_and_a_grid_with_the_last_step():
    with pytest.raises(ValueError, match="eps prediction"):
        create_gaussian_diffusion(steps=100, zero_terminal_snr=True)
    with pytest.raises(ValueError, match="leaves out t = 99"):
        create_gaussian_diffusion(steps=100, predict_v=True, zero_terminal_snr=True, timestep_respacing="ddim10")
    for flags in ({"predict_v": True}, {"predict_xstart": True}):
        diffusion = create_gaussian_diffusion(steps=100, zero_terminal_snr=True, timestep_respacing="10", **flags)
        assert diffusion.timestep_map[-1] == 99 and diffusion.alphas_cumprod[-1] == 0
        torch.manual_seed(0)
        for loop in (diffusion.ddim_sample_loop, diffusion.dpm_solver_sample_loop, diffusion.p_sample_loop):
            assert torch.isfinite(loop(TinyDenoiser(), (2, 1, 8, 8), clip_denoised=False)).all()
        losses = diffusion.training_losses(TinyDenoiser(), torch.randn(2, 1, 8, 8), torch.tensor([9, 9]))
        assert torch.isfinite(losses["loss"]).all()


# --- (4) samplers --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("respacing", ["10", "3", "25"])
def test_dpm_solver_pp_2m_matches_diffusers(mean, respacing):
    diffusers = pytest.importorskip("diffusers")
    diffusion = create_gaussian_diffusion(steps=1000, predict_xstart=mean == "sample",
                                          predict_v=mean == "v_prediction", timestep_respacing=respacing)
    model = TinyDenoiser()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = diffusion.dpm_solver_sample_loop(model, noise.shape, noise=noise.clone(), clip_denoised=False)

    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, trained_betas=get_named_beta_schedule("linear", 1000), prediction_type=mean,
        algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    scheduler.set_timesteps(timesteps=sorted(diffusion.timestep_map, reverse=True))
    x = noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t.repeat(x.shape[0])), t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_sampler_registry_and_one_batched_call_per_step_for_k_samples():
    assert set(SAMPLER_REGISTRY) == {"ddpm", "ddim", "dpm++2m"}
    diffusion = create_gaussian_diffusion(steps=100, predict_xstart=True, timestep_respacing="5")
    conditioning = torch.tensor([[0.1], [-0.2]])
    noise = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for sampler in ("ddim", "dpm++2m"):
        model = TinyDenoiser()
        mean = sample_heatmaps(diffusion, model, {"conditioning": conditioning}, (2, 1, 8, 8), sampler=sampler,
                               clip_denoised=True, noise=noise, samples_per_input=3)
        assert [size for size, _, _ in model.calls] == [6] * 5  # one call of B * K per step
        single = sample_heatmaps(diffusion, TinyDenoiser(), {"conditioning": conditioning.repeat_interleave(3, 0)},
                                 (6, 1, 8, 8), sampler=sampler, clip_denoised=True, noise=noise)
        torch.testing.assert_close(mean, single.reshape(2, 3, 1, 8, 8).mean(1))
    with pytest.raises(ValueError, match="expected one of"):
        sample_heatmaps(diffusion, TinyDenoiser(), {}, (1, 1, 8, 8), sampler="euler", clip_denoised=False)
    with pytest.raises(ValueError, match="DPM-Solver"):
        sample_heatmaps(diffusion, TinyDenoiser(), {}, (1, 1, 8, 8), sampler="dpm++2m", eta=0.5, clip_denoised=False)


def test_ddim_eta_adds_noise_of_the_ddpm_variance_at_eta_1():
    diffusion = create_gaussian_diffusion(steps=100, predict_xstart=True, timestep_respacing="10")
    x, t = torch.zeros(20000, 1, 1, 1), torch.full((20000,), 5)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731 -- x0 prediction 0: the step is pure noise
    for eta in (0.0, 0.5, 1.0):
        sample = diffusion.ddim_sample(model, x, t, eta=eta)["sample"]
        expected = eta**2 * diffusion.posterior_variance[5]  # at x = 0 and x0 = 0 only sigma^2 remains
        assert sample.var().item() == pytest.approx(expected, rel=0.05, abs=1e-9)


# --- (5) SDEdit starts ---------------------------------------------------------------------------------------------

def test_sdedit_starts_at_the_last_grid_point_below_t0_from_the_noised_picture():
    diffusion = create_gaussian_diffusion(steps=100, predict_xstart=True, timestep_respacing="10")
    assert diffusion.timestep_map == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    assert sdedit_start_step(diffusion, 50) == 4 and sdedit_start_step(diffusion, 44) == 4
    picture, noise = torch.rand(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    for sampler in ("ddim", "dpm++2m", "ddpm"):
        model = TinyDenoiser()
        sample_heatmaps(diffusion, model, {}, picture.shape, sampler=sampler, clip_denoised=False, noise=noise,
                        start_picture=picture, start_step=4)
        assert [int(t[0]) for _, t, _ in model.calls] == [44, 33, 22, 11, 0]
        torch.testing.assert_close(model.calls[0][2], diffusion.q_sample(picture, torch.tensor([4, 4]), noise))


def test_metrics_json_names_the_start_picture_and_flags_the_ground_truth(tmp_path):
    from datasets import build_dataset
    from datasets.synthetic import generate_gazefollow
    from engine.data import make_loader
    from eval.evaluate import evaluate

    generate_gazefollow(tmp_path / "data", n_train_images=1, n_test_images=2, seed=5)
    common = {**TINY, "source_dataset_dir": str(tmp_path / "data"), "num_workers": 0, "eval_from_picture": True,
              "time_noise": 10}
    for source, diagnostic in (("centre_prior", False), ("ground_truth", True)):
        config = load_config([], {**common, "picture_source": source})
        torch.manual_seed(0)
        model = get_model(config)
        evaluate(model, config, make_loader(build_dataset(config, "test"), config, train=False), torch.device("cpu"),
                 tmp_path / source, progress=False)
        summary = json.loads((tmp_path / source / "metrics.json").read_text())
        assert summary["start_picture"] == {"source": source, "time_noise": 10, "start_timestep": 6,
                                            "diagnostic_only": diagnostic}
        assert ("DIAGNOSTIC ONLY" in summary.get("notes", "")) is diagnostic


# --- (6) compatibility switches ------------------------------------------------------------------------------------

def test_compat_original_ddim_step_lands_on_abar_of_t_minus_1():
    kwargs = dict(steps=100, predict_xstart=True, timestep_respacing="10")
    fixed = create_gaussian_diffusion(**kwargs)
    compat = create_gaussian_diffusion(**kwargs, compat_original_ddim_step=True)
    base = create_gaussian_diffusion(steps=100, predict_xstart=True)
    np.testing.assert_array_equal(fixed.ddim_alphas_cumprod_prev, fixed.alphas_cumprod_prev)
    np.testing.assert_allclose(compat.ddim_alphas_cumprod_prev,
                               [1.0, *base.alphas_cumprod[np.array(compat.timestep_map[1:]) - 1]], rtol=1e-12)
    # Everything but the DDIM step is unchanged.
    np.testing.assert_array_equal(compat.betas, fixed.betas)
    x, t, model = torch.randn(2, 1, 8, 8), torch.tensor([9, 9]), TinyDenoiser()
    torch.testing.assert_close(compat.p_sample(model, x, t)["pred_xstart"], fixed.p_sample(model, x, t)["pred_xstart"])
    assert not torch.allclose(compat.ddim_sample(model, x, t)["sample"], fixed.ddim_sample(model, x, t)["sample"])


def test_compat_original_std_state_rescales_the_sampling_state_each_step():
    config = load_config([], {**TINY, "compat_original_std_state": True})
    diffusion = build_sampling_diffusion(config)
    state_fn = sampling_state_fn(config)
    assert state_fn is not None and sampling_state_fn(load_config([], TINY)) is None
    states = []
    recorder = lambda x, t, **kw: (states.append(x.clone()), torch.zeros_like(x))[1]  # noqa: E731
    diffusion.ddim_sample_loop(recorder, (2, 1, 16, 16), noise=3 * torch.randn(2, 1, 16, 16), state_fn=state_fn,
                               clip_denoised=False)
    assert len(states) == 4
    for state in states:
        torch.testing.assert_close(state.std(dim=(1, 2, 3)), torch.ones(2))


# --- (7) each option changes what it should and nothing else -------------------------------------------------------

@functools.lru_cache(maxsize=None)
def fingerprint_of(overrides: tuple) -> dict:
    return fingerprint(load_config([], {**TINY, "train_time_steps": 20, "sample_time_steps": 4, **dict(overrides)}))


def fingerprint(config) -> dict:
    """Values of the parts an option can act on: the model's parameter shapes, the training schedule, one training
    loss (fixed inputs and seed) and the heatmaps predict_heatmaps samples (fixed weights and seed)."""
    torch.manual_seed(0)
    model = get_model(config)
    with torch.no_grad():  # the UNet's zero-initialised output layer would hide every sampling option
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    diffusion = build_training_diffusion(config)
    x_start = torch.randn(3, 1, 16, 16)
    conditioning = model.denoiser_kwargs(model.encode(*(batch()[k][:3] for k in ("image", "head_mask", "face"))))
    torch.manual_seed(1)
    with torch.no_grad():
        loss = diffusion.training_losses(denoiser(model, config), x_start, torch.tensor([1, 9, 18]),
                                         model_kwargs=conditioning)["loss"]
    torch.manual_seed(2)
    heatmaps, _ = predict_heatmaps(model, build_formulation(config), config, batch(), torch.device("cpu"))
    return {"model": [tuple(p.shape) for p in model.parameters()], "schedule": diffusion.betas.tolist(),
            "loss": loss.tolist(), "sampling": heatmaps.round(5).tolist()}


OPTION_EFFECTS = [  # (base overrides, the option switched, the parts it must change)
    ({}, {"adm_learn_sigma": True}, {"model", "loss", "sampling"}),
    ({"adm_learn_sigma": True}, {"adm_rescale_learned_sigmas": True}, {"loss"}),
    ({}, {"adm_use_kl": True}, {"loss"}),
    ({"sampler": "ddpm"}, {"adm_sigma_small": True}, {"sampling"}),
    ({}, {"adm_rescale_timesteps": True}, {"loss", "sampling"}),
    ({"adm_predict_xstart": False}, {"adm_predict_v": True}, {"loss", "sampling"}),
    ({"adm": False, "adm_predict_xstart": False}, {"predict_sthg": "pred_x0"}, {"loss", "sampling"}),
    ({}, {"mse_loss_weight_type": "min_snr_5"}, {"loss"}),
    ({}, {"noise_changer": True}, {"loss"}),
    ({"noise_changer": True}, {"offset_noise_strength": 0.5}, {"loss"}),
    ({}, {"fix_snr": True}, {"schedule", "loss", "sampling"}),
    ({}, {"sampler": "dpm++2m"}, {"sampling"}),
    ({}, {"ddim_eta": 1.0}, {"sampling"}),
    ({}, {"sample_k": 3}, {"sampling"}),
    ({"diff_normalization": 0.2}, {"clip_denoised": True}, {"sampling"}),
    ({}, {"eval_from_picture": True, "time_noise": 10}, {"sampling"}),  # time_noise alone is unread: an error
    ({"eval_from_picture": True, "time_noise": 10}, {"time_noise": 5}, {"sampling"}),
    ({"eval_from_picture": True, "time_noise": 10}, {"picture_source": "ground_truth"}, {"sampling"}),
    ({}, {"compat_original_ddim_step": True}, {"sampling"}),
    ({}, {"compat_original_std_state": True}, {"sampling"}),
]


@pytest.mark.parametrize("base,switch,parts", OPTION_EFFECTS, ids=[next(iter(s)) for _, s, _ in OPTION_EFFECTS])
def test_switching_an_option_changes_what_it_should_and_nothing_else(base, switch, parts):
    before = fingerprint_of(tuple(sorted(base.items())))
    after = fingerprint_of(tuple(sorted({**base, **switch}.items())))
    changed = {part for part in before if before[part] != after[part]}
    assert changed == parts


def test_sampling_grids_include_the_last_step_and_one_step_starts_there():
    for steps, expected in ((1, [19]), (2, [0, 19]), (4, [0, 6, 13, 19])):
        config = load_config([], {**TINY, "train_time_steps": 20, "sample_time_steps": steps})
        assert build_sampling_diffusion(config).timestep_map == expected
