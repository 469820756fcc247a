"""Parity of diffusion/ with openai/guided-diffusion (PyPI `guided-diffusion-sdk`, module `guided_diffusion`).

Install the oracle without its dependencies (it must not pull torch):
    pip install --no-deps guided-diffusion-sdk
"""
import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

with warnings.catch_warnings():
    # The oracle's nn.py uses deprecated torch.cuda.amp decorators at import time.
    warnings.simplefilter("ignore", FutureWarning)
    gd = pytest.importorskip("guided_diffusion.gaussian_diffusion")
    gd_respace = pytest.importorskip("guided_diffusion.respace")
    gd_script_util = pytest.importorskip("guided_diffusion.script_util")

from diffusion import (  # noqa: E402
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    create_gaussian_diffusion,
    get_named_beta_schedule,
    space_timesteps,
)

CHANNELS = 2
STEPS = 100
MEAN_TYPES = ("EPSILON", "START_X")  # the oracle has no v-prediction; see test_diffusion.py for v
VAR_TYPES = ("FIXED_SMALL", "FIXED_LARGE", "LEARNED_RANGE", "LEARNED")
LOSS_TYPES = ("MSE", "RESCALED_MSE", "KL", "RESCALED_KL")
RESPACINGS = ("100", "ddim10", "10,15,20")


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyDenoiser(nn.Module):
    """A fixed random conv net whose output depends on x, on t and on a conditioning vector."""

    def __init__(self, out_channels: int):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(CHANNELS, out_channels, 3, padding=1)
        with torch.no_grad():
            for parameter in self.conv.parameters():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        self.register_buffer("frequencies", torch.linspace(0.01, 0.2, out_channels))

    def forward(self, x, t, conditioning):
        time_embedding = torch.sin(t.float()[:, None] * self.frequencies)
        # tanh keeps learned-range variance outputs in [-1, 1], their meaningful range.
        return torch.tanh(self.conv(x) + time_embedding[:, :, None, None] + conditioning[:, :, None, None])


def make_pair(mean: str, var: str, loss: str = "MSE", respacing: str = "100", rescale_timesteps: bool = False):
    betas = gd.get_named_beta_schedule("linear", STEPS)
    use_timesteps = space_timesteps(STEPS, respacing)
    ours = SpacedDiffusion(use_timesteps, betas=betas, model_mean_type=ModelMeanType[mean],
                           model_var_type=ModelVarType[var], loss_type=LossType[loss],
                           rescale_timesteps=rescale_timesteps)
    oracle = gd_respace.SpacedDiffusion(use_timesteps, betas=betas, model_mean_type=gd.ModelMeanType[mean],
                                        model_var_type=gd.ModelVarType[var], loss_type=gd.LossType[loss],
                                        rescale_timesteps=rescale_timesteps)
    model = TinyDenoiser(2 * CHANNELS if var.startswith("LEARNED") else CHANNELS)
    conditioning = torch.randn(3, model.frequencies.shape[0], generator=torch.Generator().manual_seed(1))
    return ours, oracle, model, {"conditioning": conditioning}


def assert_parity(ours, oracle, rel=1e-5):
    """Equal within float32 round-off, measured against the oracle's magnitude."""
    scale = max(1.0, oracle.abs().max().item())
    torch.testing.assert_close(ours, oracle, rtol=0.0, atol=rel * scale)


def data(seed=2):
    generator = torch.Generator().manual_seed(seed)
    x_start = torch.rand(3, CHANNELS, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(3, CHANNELS, 8, 8, generator=generator)
    return x_start, noise


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [50, 250, 1000, 4000])
def test_betas_match(schedule, steps):
    np.testing.assert_allclose(get_named_beta_schedule(schedule, steps), gd.get_named_beta_schedule(schedule, steps),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("respacing", ["ddim10", "ddim25", "50", "10,15,20", "1,2,3,4", "100"])
def test_space_timesteps_match(respacing):
    assert space_timesteps(STEPS, respacing) == gd_respace.space_timesteps(STEPS, respacing)


@pytest.mark.parametrize("respacing", RESPACINGS)
def test_q_sample_and_posterior_match(respacing):
    ours, oracle, _, _ = make_pair("EPSILON", "FIXED_SMALL", respacing=respacing)
    x_start, noise = data()
    x_t = torch.randn_like(x_start)
    t = torch.tensor([0, 1, ours.num_timesteps - 1])
    assert_parity(ours.q_sample(x_start, t, noise=noise), oracle.q_sample(x_start, t, noise=noise))
    for mine, theirs in zip(ours.q_mean_variance(x_start, t), oracle.q_mean_variance(x_start, t)):
        assert_parity(mine, theirs)
    for mine, theirs in zip(ours.q_posterior_mean_variance(x_start, x_t, t),
                            oracle.q_posterior_mean_variance(x_start, x_t, t)):
        assert_parity(mine, theirs)


@pytest.mark.parametrize("mean,var,respacing", list(itertools.product(MEAN_TYPES, VAR_TYPES, RESPACINGS)))
@pytest.mark.parametrize("clip_denoised", [True, False])
def test_p_mean_variance_matches(mean, var, respacing, clip_denoised):
    ours, oracle, model, model_kwargs = make_pair(mean, var, respacing=respacing)
    x_t = 2 * data()[1]
    t = torch.tensor([0, 3, ours.num_timesteps - 1])
    mine = ours.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
    theirs = oracle.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
    assert mine.keys() == theirs.keys()
    for key in theirs:
        assert_parity(mine[key], theirs[key])


@pytest.mark.parametrize("mean,var,loss", list(itertools.product(MEAN_TYPES, VAR_TYPES, LOSS_TYPES)))
def test_training_losses_match(mean, var, loss):
    ours, oracle, model, model_kwargs = make_pair(mean, var, loss)
    x_start, noise = data()
    t = torch.tensor([0, 1, STEPS - 1])
    mine = ours.training_losses(model, x_start, t, model_kwargs=model_kwargs, noise=noise)
    theirs = oracle.training_losses(model, x_start, t, model_kwargs=model_kwargs, noise=noise)
    assert set(theirs) <= set(mine)
    for key in theirs:
        assert_parity(mine[key], theirs[key])


@pytest.mark.parametrize("mean,var,respacing", list(itertools.product(MEAN_TYPES, VAR_TYPES[:3], RESPACINGS)))
@pytest.mark.parametrize("clip_denoised", [True, False])
def test_p_sample_loop_matches(mean, var, respacing, clip_denoised):
    ours, oracle, model, model_kwargs = make_pair(mean, var, respacing=respacing)
    noise = data()[1]
    samples = []
    for diffusion in (ours, oracle):
        torch.manual_seed(3)
        samples.append(diffusion.p_sample_loop(model, noise.shape, noise=noise, clip_denoised=clip_denoised,
                                               model_kwargs=model_kwargs))
    assert_parity(*samples)


@pytest.mark.parametrize("mean,var,respacing", list(itertools.product(MEAN_TYPES, VAR_TYPES[:3], RESPACINGS)))
@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("clip_denoised", [True, False])
def test_ddim_sample_loop_matches(mean, var, respacing, eta, clip_denoised):
    ours, oracle, model, model_kwargs = make_pair(mean, var, respacing=respacing)
    noise = data()[1]
    samples = []
    for diffusion in (ours, oracle):
        torch.manual_seed(3)
        samples.append(diffusion.ddim_sample_loop(model, noise.shape, noise=noise, clip_denoised=clip_denoised,
                                                  model_kwargs=model_kwargs, eta=eta))
    # The eps that DDIM re-derives from x_0 uses a different (finite-everywhere) formula here; the round-off of
    # the two formulas compounds over up to 100 steps.
    assert_parity(*samples, rel=2e-5)


@pytest.mark.parametrize("respacing", RESPACINGS)
def test_model_sees_the_same_timesteps(respacing):
    ours, oracle, _, _ = make_pair("EPSILON", "FIXED_SMALL", respacing=respacing, rescale_timesteps=True)
    seen = {}

    def recording_model(name):
        def model(x, t):
            seen.setdefault(name, []).append(t)
            return torch.zeros_like(x)
        return model

    x_t = data()[1]
    for name, diffusion in (("ours", ours), ("oracle", oracle)):
        for step in range(ours.num_timesteps):
            diffusion.p_mean_variance(recording_model(name), x_t, torch.full((3,), step))
    for mine, theirs in zip(seen["ours"], seen["oracle"], strict=True):
        assert mine.dtype == theirs.dtype
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


FACTORY_FLAGS = {
    "learn_sigma": [False, True],
    "sigma_small": [False, True],
    "noise_schedule": ["linear", "cosine"],
    "use_kl": [False, True],
    "predict_xstart": [False, True],
    "rescale_timesteps": [False, True],
    "rescale_learned_sigmas": [False, True],
    "timestep_respacing": ["", "ddim10", "10,15,20"],
}


FACTORY_CASES = [dict(zip(FACTORY_FLAGS, values)) for values in itertools.product(*FACTORY_FLAGS.values())]


@pytest.mark.parametrize("flags", FACTORY_CASES)
def test_create_gaussian_diffusion_matches(flags):
    ours = create_gaussian_diffusion(steps=STEPS, **flags)
    oracle = gd_script_util.create_gaussian_diffusion(steps=STEPS, **flags)
    assert ours.model_mean_type.name == oracle.model_mean_type.name
    assert ours.model_var_type.name == oracle.model_var_type.name
    assert ours.loss_type.name == oracle.loss_type.name
    assert ours.rescale_timesteps == oracle.rescale_timesteps
    assert ours.timestep_map == oracle.timestep_map
    np.testing.assert_allclose(ours.betas, oracle.betas, rtol=1e-12, atol=0)


def test_v_target_matches_diffusers_get_velocity():
    """guided-diffusion has no v-prediction; diffusers, when present, is a second oracle for the v target."""
    diffusers = pytest.importorskip("diffusers")
    ours = create_gaussian_diffusion(steps=1000, predict_v=True)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=ours.betas.tolist())
    x_start, noise = data()
    t = torch.tensor([0, 400, 999])
    # diffusers accumulates abar in float32; the float64 schedule here differs from it by float32 round-off.
    torch.testing.assert_close(ours._predict_v(x_start, t, noise), scheduler.get_velocity(x_start, noise, t),
                               rtol=0, atol=1e-4)
