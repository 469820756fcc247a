"""Closed-form checks of diffusion/: schedules, q and its posterior, x0/eps/v conversions, respacing, samplers with
oracle networks, losses, heatmap scaling and the std-normalised network input. No external oracle needed."""
import math

import numpy as np
import pytest
import torch

from diffusion import (
    GaussianDiffusion,
    HeatmapScaling,
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    StdNormalizedInput,
    create_gaussian_diffusion,
    default_sampler,
    get_named_beta_schedule,
    sample_heatmaps,
    space_timesteps,
)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def make_diffusion(mean=ModelMeanType.EPSILON, var=ModelVarType.FIXED_SMALL, loss=LossType.MSE, steps=1000,
                   **kwargs) -> GaussianDiffusion:
    return GaussianDiffusion(get_named_beta_schedule("linear", steps), mean, var, loss, **kwargs)


def linear_alpha_bar(steps: int) -> np.ndarray:
    """abar of the scaled linear schedule, written out independently of the code under test."""
    scale = 1000 / steps
    betas = [scale * 1e-4 + (scale * 0.02 - scale * 1e-4) * i / (steps - 1) for i in range(steps)]
    return np.cumprod([1 - beta for beta in betas])


def constant_model(value):
    """A network whose prediction is `value` whatever x_t and t are: an oracle when value is the true target."""
    return lambda x, t, **kwargs: value.expand_as(x) if value.ndim == 0 else value


# --- schedules ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,first,last", [(1000, 1e-4, 0.02), (250, 4e-4, 0.08)])
def test_linear_schedule_endpoints(steps, first, last):
    betas = get_named_beta_schedule("linear", steps)
    assert betas.dtype == np.float64 and betas.shape == (steps,)
    assert betas[0] == pytest.approx(first, rel=1e-12)
    assert betas[-1] == pytest.approx(last, rel=1e-12)
    np.testing.assert_allclose(np.diff(betas), (last - first) / (steps - 1), rtol=1e-9)


@pytest.mark.parametrize("steps", [50, 1000])
def test_cosine_alpha_bar_follows_its_formula(steps):
    betas = get_named_beta_schedule("cosine", steps)
    f = [math.cos((s / steps + 0.008) / 1.008 * math.pi / 2) ** 2 for s in range(steps + 1)]
    expected_alpha_bar = np.array(f[1:]) / f[0]
    # abar reaches 0 at s = 1: only the last beta hits the 0.999 cap.
    np.testing.assert_allclose(np.cumprod(1 - betas)[:-1], expected_alpha_bar[:-1], rtol=1e-9)
    assert betas[-1] == 0.999 and (betas[:-1] < 0.999).all()


def test_factor_multiplier_scales_every_beta_and_caps_them():
    for schedule in ("linear", "cosine"):
        base = get_named_beta_schedule(schedule, 1000)
        np.testing.assert_allclose(get_named_beta_schedule(schedule, 1000, factor_multiplier=0.5), 0.5 * base,
                                   rtol=1e-15)
    large = get_named_beta_schedule("linear", 1000, factor_multiplier=60.0)
    base = get_named_beta_schedule("linear", 1000)
    uncapped = 60.0 * base < 0.999
    np.testing.assert_allclose(large[uncapped], 60.0 * base[uncapped], rtol=1e-15)
    assert (large[~uncapped] == 0.999).all() and (~uncapped).sum() > 0


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_factor_multiplier_must_be_positive(factor):
    with pytest.raises(ValueError, match="factor_multiplier"):
        get_named_beta_schedule("linear", 1000, factor_multiplier=factor)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="'quadratic'"):
        get_named_beta_schedule("quadratic", 1000)


def test_constructor_rejects_bad_arguments():
    betas = get_named_beta_schedule("linear", 10 ** 3)
    with pytest.raises(TypeError, match="model_mean_type"):
        GaussianDiffusion(betas, "epsilon", ModelVarType.FIXED_SMALL, LossType.MSE)
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(np.array([0.1, 1.5]), ModelMeanType.START_X, ModelVarType.FIXED_SMALL, LossType.MSE)
    with pytest.raises(ValueError, match="at least 1 step"):
        GaussianDiffusion(np.array([]), ModelMeanType.START_X, ModelVarType.FIXED_SMALL, LossType.MSE)
    with pytest.raises(ValueError, match="clip_range"):
        make_diffusion(clip_range=0.0)


# --- the forward process and its posterior --------------------------------------------------------------------------

def test_q_sample_moments():
    diffusion = make_diffusion()
    alpha_bar = linear_alpha_bar(1000)
    samples_per_t = 100_000
    steps = [10, 900]
    x_start = torch.full((2 * samples_per_t, 1, 1, 1), 0.7)
    t = torch.tensor(steps).repeat_interleave(samples_per_t)
    torch.manual_seed(0)
    x_t = diffusion.q_sample(x_start, t).reshape(2, samples_per_t).double()
    for row, step in enumerate(steps):
        mean, variance = math.sqrt(alpha_bar[step]) * 0.7, 1 - alpha_bar[step]
        # 5 standard errors of the sample mean and of the sample variance.
        assert x_t[row].mean().item() == pytest.approx(mean, abs=5 * math.sqrt(variance / samples_per_t))
        assert x_t[row].var().item() == pytest.approx(variance, abs=5 * variance * math.sqrt(2 / samples_per_t))


def test_q_mean_variance_closed_form():
    diffusion = make_diffusion()
    alpha_bar = linear_alpha_bar(1000)
    x_start = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 499, 999])
    mean, variance, log_variance = diffusion.q_mean_variance(x_start, t)
    a = torch.tensor(alpha_bar[[0, 499, 999]]).reshape(3, 1, 1, 1)
    torch.testing.assert_close(mean, (a.sqrt() * x_start).float())
    torch.testing.assert_close(variance, (1 - a).float().expand_as(x_start))
    torch.testing.assert_close(log_variance, torch.log(1 - a).float().expand_as(x_start))


@pytest.mark.parametrize("step", [1, 50, 999])
def test_q_posterior_is_the_bayes_product_of_two_gaussians(step):
    diffusion = make_diffusion()
    alpha_bar = linear_alpha_bar(1000)
    alpha_bar_prev = alpha_bar[step - 1]
    alpha = alpha_bar[step] / alpha_bar_prev
    beta = 1 - alpha
    x_start, x_t = torch.randn(2, 1, 2, 3, 3).double().unbind(0)
    # The product of q(x_{t-1} | x_0) = N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1})
    # and q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t), normalised over x_{t-1}.
    precision = 1 / (1 - alpha_bar_prev) + alpha / beta
    expected_mean = math.sqrt(alpha_bar_prev) * x_start / (1 - alpha_bar_prev) + math.sqrt(alpha) * x_t / beta
    expected_mean = expected_mean / precision
    t = torch.tensor([step])
    mean, variance, log_variance = diffusion.q_posterior_mean_variance(x_start.float(), x_t.float(), t)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(variance.double(), torch.full_like(x_t, 1 / precision), rtol=1e-5, atol=0)
    torch.testing.assert_close(log_variance.double(), torch.full_like(x_t, -math.log(precision)), rtol=1e-5, atol=0)


def test_q_posterior_at_t0_is_x0_with_the_clipped_log_variance():
    diffusion = make_diffusion()
    x_start, x_t = torch.randn(2, 1, 2, 3, 3).unbind(0)
    mean, variance, log_variance = diffusion.q_posterior_mean_variance(x_start, x_t, torch.tensor([0]))
    torch.testing.assert_close(mean, x_start)
    assert (variance == 0).all()
    _, variance_1, _ = diffusion.q_posterior_mean_variance(x_start, x_t, torch.tensor([1]))
    torch.testing.assert_close(log_variance, torch.log(variance_1))


def test_timesteps_must_be_one_per_sample():
    diffusion = make_diffusion()
    with pytest.raises(ValueError, match="1-D tensor of 3 indices"):
        diffusion.q_sample(torch.zeros(3, 1, 2, 2), torch.tensor([1, 2]))


# --- conversions between x0, eps and v ------------------------------------------------------------------------------

def test_x0_eps_v_conversions_round_trip():
    diffusion = make_diffusion()
    alpha_bar = torch.tensor(linear_alpha_bar(1000)[[0, 300, 999]]).reshape(3, 1, 1, 1)
    t = torch.tensor([0, 300, 999])
    x_start, eps = torch.randn(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0)).unbind(0)
    x_t = diffusion.q_sample(x_start, t, noise=eps)
    v = diffusion._predict_v(x_start, t, eps)
    expected_v = alpha_bar.sqrt() * eps.double() - (1 - alpha_bar).sqrt() * x_start.double()
    torch.testing.assert_close(v.double(), expected_v, rtol=0, atol=1e-6)
    # Dividing by sqrt(abar) = 0.0064 at t = 999 and by sqrt(1 - abar) = 0.01 at t = 0 magnifies float32 round-off
    # about 150 and 100 times.
    torch.testing.assert_close(diffusion._predict_xstart_from_eps(x_t, t, eps), x_start, rtol=0, atol=1e-4)
    torch.testing.assert_close(diffusion._predict_eps_from_xstart(x_t, t, x_start), eps, rtol=0, atol=1e-4)
    torch.testing.assert_close(diffusion._predict_xstart_from_v(x_t, t, v), x_start, rtol=0, atol=1e-5)


def zero_terminal_snr_betas(steps=20):
    alpha_bar = 1 - np.linspace(0.01, 1.0, steps)  # falls to 0 at the last step
    return 1 - alpha_bar / np.append(1.0, alpha_bar[:-1])


def test_zero_terminal_snr_needs_x0_or_v_prediction_and_stays_finite():
    betas = zero_terminal_snr_betas()
    assert betas[-1] == 1.0
    with pytest.raises(ValueError, match="EPSILON"):
        GaussianDiffusion(betas, ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL, LossType.MSE)
    diffusion = GaussianDiffusion(betas, ModelMeanType.VELOCITY, ModelVarType.FIXED_SMALL, LossType.MSE)
    x_t, x_start = torch.randn(2, 2, 1, 3, 3).unbind(0)
    last = torch.full((2,), len(betas) - 1)
    # At abar = 0, x_t is pure noise: the implied eps is x_t itself, finite.
    torch.testing.assert_close(diffusion._predict_eps_from_xstart(x_t, last, x_start), x_t)
    x_start = torch.rand(2, 1, 3, 3) * 2 - 1
    sample = diffusion.ddim_sample_loop(v_oracle(diffusion, x_start), x_start.shape, noise=torch.randn_like(x_start))
    torch.testing.assert_close(sample, x_start, rtol=0, atol=1e-5)


# --- respacing ------------------------------------------------------------------------------------------------------

def test_respacing_grids():
    assert space_timesteps(1000, "ddim50") == set(range(0, 1000, 20))
    fifty = sorted(space_timesteps(1000, "50"))
    assert len(fifty) == 50 and fifty[0] == 0 and fifty[-1] == 999
    assert set(np.diff(fifty)) <= {20, 21}  # stride 999 / 49 = 20.39, rounded
    sections = sorted(space_timesteps(300, "10,15,20"))
    for start, count in ((0, 10), (100, 15), (200, 20)):
        section = [step for step in sections if start <= step < start + 100]
        assert len(section) == count and section[0] == start and section[-1] == start + 99
    # By hand: sections of 6 and 5 steps (the first takes the remainder), strides 5 and 2.
    assert space_timesteps(11, "2,3") == {0, 5, 6, 8, 10}
    assert space_timesteps(11, [2, 3]) == {0, 5, 6, 8, 10}


@pytest.mark.parametrize("steps,respacing,message", [
    (10, "ddim9", "no integer stride"),
    (10, "11", "cannot take 11 steps"),
    (10, "abc", "'abc'"),
    (10, "0", "positive step counts"),
])
def test_respacing_errors(steps, respacing, message):
    with pytest.raises(ValueError, match=message):
        space_timesteps(steps, respacing)


@pytest.mark.parametrize("respacing", ["ddim50", "10,15,20"])
def test_respaced_alpha_bar_equals_the_base_at_kept_steps(respacing):
    base = make_diffusion()
    spaced = create_gaussian_diffusion(steps=1000, timestep_respacing=respacing)
    kept = spaced.timestep_map
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)
    # DDIM steps to abar of the previous kept step, not of t - 1.
    np.testing.assert_allclose(spaced.alphas_cumprod_prev[1:], base.alphas_cumprod[kept[:-1]], rtol=1e-12)
    assert spaced.alphas_cumprod_prev[5] != base.alphas_cumprod[kept[5] - 1]


def test_spaced_use_timesteps_must_lie_in_the_base():
    with pytest.raises(ValueError, match=r"\[0, 1000\), found \[1000\]"):
        SpacedDiffusion({0, 1000}, betas=get_named_beta_schedule("linear", 1000),
                        model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.FIXED_SMALL,
                        loss_type=LossType.MSE)


@pytest.mark.parametrize("rescale_timesteps,expected", [
    (False, torch.arange(90, -1, -10)),
    (True, torch.arange(90, -1, -10).float() * 10.0),
])
def test_the_network_sees_base_timesteps(rescale_timesteps, expected):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10", rescale_timesteps=rescale_timesteps)
    seen = []

    def model(x, t):
        seen.append(t[0])
        return torch.zeros_like(x)

    diffusion.ddim_sample_loop(model, (1, 1, 2, 2), noise=torch.zeros(1, 1, 2, 2))
    torch.testing.assert_close(torch.stack(seen), expected, rtol=0, atol=0)


def test_unspaced_rescaled_timesteps():
    diffusion = make_diffusion(steps=250, rescale_timesteps=True)
    seen = []
    diffusion.p_mean_variance(lambda x, t: seen.append(t) or torch.zeros_like(x), torch.zeros(2, 1, 2, 2),
                              torch.tensor([0, 249]))
    torch.testing.assert_close(seen[0], torch.tensor([0.0, 996.0]))


# --- samplers with oracle networks ----------------------------------------------------------------------------------

def v_oracle(diffusion: GaussianDiffusion, x_start: torch.Tensor):
    """The exact v for x_start given x_t: v = (sqrt(abar) x_t - x_0) / sqrt(1 - abar).

    `diffusion` must be the un-respaced process, since the network sees its timesteps.
    """
    alpha_bar = torch.tensor(diffusion.alphas_cumprod, dtype=torch.float64)

    def model(x, t):
        a = alpha_bar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return ((a.sqrt() * x.double() - x_start.double()) / (1 - a).sqrt()).float()

    return model


def test_ddim_with_an_x0_oracle_follows_the_deterministic_path():
    v = 3.0
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing="ddim10", predict_xstart=True, clip_range=v)
    x_start = (torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1) * v
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    alpha_bar = torch.tensor(diffusion.alphas_cumprod, dtype=torch.float64)
    eps = (noise.double() - alpha_bar[-1].sqrt() * x_start) / (1 - alpha_bar[-1]).sqrt()
    steps = list(diffusion.ddim_sample_loop_progressive(constant_model(x_start), x_start.shape, noise=noise))
    assert len(steps) == 10
    # With eta = 0 and the true x_0, every DDIM state is q_sample(x_0, t_prev) with the initial eps.
    for i, out in zip(range(9, 0, -1), steps):
        expected = alpha_bar[i - 1].sqrt() * x_start + (1 - alpha_bar[i - 1]).sqrt() * eps
        torch.testing.assert_close(out["sample"].double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(steps[-1]["sample"], x_start)


def test_ddim_with_a_v_oracle_returns_x0():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10", predict_v=True)
    base = create_gaussian_diffusion(steps=100, predict_v=True)  # the oracle works on base timesteps
    x_start = torch.rand(2, 1, 4, 4) * 2 - 1
    sample = diffusion.ddim_sample_loop(v_oracle(base, x_start), x_start.shape, noise=torch.randn_like(x_start),
                                        clip_denoised=False)
    torch.testing.assert_close(sample, x_start, rtol=0, atol=1e-5)


@pytest.mark.parametrize("clip_denoised", [True, False])
def test_p_sample_loop_with_an_x0_oracle_returns_x0_clipped_to_clip_range(clip_denoised):
    v = 3.0
    diffusion = create_gaussian_diffusion(steps=50, predict_xstart=True, clip_range=v)
    prediction = torch.tensor([-7.0, -3.0, -1.5, 0.0, 2.0, 4.5]).reshape(1, 1, 2, 3)
    torch.manual_seed(0)
    sample = diffusion.p_sample_loop(constant_model(prediction), prediction.shape, clip_denoised=clip_denoised,
                                     device="cpu")
    expected = prediction.clamp(-v, v) if clip_denoised else prediction
    torch.testing.assert_close(sample, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mean", [ModelMeanType.START_X, ModelMeanType.EPSILON, ModelMeanType.VELOCITY])
def test_clip_range_clamps_the_predicted_x0(mean):
    diffusion = make_diffusion(mean=mean, clip_range=2.5)
    x_t = torch.zeros(2, 1, 2, 2)
    t = torch.tensor([400, 400])
    output = torch.full_like(x_t, 40.0)  # far out of range whatever it parameterises
    clipped = diffusion.p_mean_variance(constant_model(output), x_t, t)["pred_xstart"]
    unclipped = diffusion.p_mean_variance(constant_model(output), x_t, t, clip_denoised=False)["pred_xstart"]
    assert unclipped.abs().min() > 2.5
    torch.testing.assert_close(clipped, unclipped.clamp(-2.5, 2.5))


def test_sampling_needs_a_device_for_a_parameterless_model():
    diffusion = make_diffusion(steps=50)
    with pytest.raises(ValueError, match="pass device= or noise="):
        diffusion.p_sample_loop(constant_model(torch.tensor(0.0)), (1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"noise: expected shape \(1, 1, 2, 2\)"):
        diffusion.p_sample_loop(constant_model(torch.tensor(0.0)), (1, 1, 2, 2), noise=torch.zeros(1, 1, 3, 3))


def test_ddim_eta_must_lie_in_unit_interval():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10")
    with pytest.raises(ValueError, match="eta"):
        diffusion.ddim_sample_loop(constant_model(torch.tensor(0.0)), (1, 1, 2, 2), noise=torch.zeros(1, 1, 2, 2),
                                   eta=1.5)


# --- training losses ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean", [ModelMeanType.START_X, ModelMeanType.EPSILON, ModelMeanType.VELOCITY])
def test_mse_targets(mean):
    diffusion = make_diffusion(mean=mean)
    alpha_bar = torch.tensor(linear_alpha_bar(1000)[[3, 700]]).reshape(2, 1, 1, 1)
    x_start, noise = torch.randn(2, 2, 3, 4, 4).unbind(0)
    t = torch.tensor([3, 700])
    terms = diffusion.training_losses(constant_model(torch.tensor(0.0)), x_start, t, noise=noise)
    target = {
        ModelMeanType.START_X: x_start.double(),
        ModelMeanType.EPSILON: noise.double(),
        ModelMeanType.VELOCITY: alpha_bar.sqrt() * noise.double() - (1 - alpha_bar).sqrt() * x_start.double(),
    }[mean]
    # The network predicts 0, so the MSE is the mean square of the target.
    torch.testing.assert_close(terms["mse"].double(), (target**2).mean(dim=(1, 2, 3)), rtol=1e-5, atol=0)
    assert torch.equal(terms["loss"], terms["mse"]) and "vb" not in terms


def test_vb_term_vanishes_for_the_true_x0_with_the_posterior_variance():
    diffusion = make_diffusion(mean=ModelMeanType.START_X, loss=LossType.KL)
    x_start = torch.rand(3, 1, 4, 4) * 2 - 1
    # p(x_{t-1} | x_t) then equals q(x_{t-1} | x_t, x_0): the KL is 0 at every t > 0.
    terms = diffusion.training_losses(constant_model(x_start), x_start, torch.tensor([1, 500, 999]))
    torch.testing.assert_close(terms["loss"], torch.zeros(3), rtol=0, atol=1e-5)


def test_learned_sigma_vb_reaches_only_the_variance_channels():
    diffusion = make_diffusion(var=ModelVarType.LEARNED_RANGE)
    x_start = torch.rand(2, 3, 4, 4) * 2 - 1
    output = torch.nn.Parameter(torch.rand(2, 6, 4, 4) * 2 - 1)
    terms = diffusion.training_losses(lambda x, t: output, x_start, torch.tensor([5, 600]))
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    terms["vb"].sum().backward()
    assert (output.grad[:, :3] == 0).all() and (output.grad[:, 3:] != 0).any()
    output.grad = None
    terms = diffusion.training_losses(lambda x, t: output, x_start, torch.tensor([5, 600]))
    terms["mse"].sum().backward()
    assert (output.grad[:, 3:] == 0).all() and (output.grad[:, :3] != 0).any()


def test_rescaled_losses_scale_the_vb_term_by_the_number_of_steps():
    x_start, noise = torch.rand(2, 2, 1, 4, 4).unbind(0)
    t = torch.tensor([0, 200])
    output = torch.rand(2, 2, 4, 4) * 2 - 1

    def losses(loss):
        diffusion = make_diffusion(var=ModelVarType.LEARNED_RANGE, loss=loss, steps=250)
        return diffusion.training_losses(constant_model(output), x_start, t, noise=noise)

    torch.testing.assert_close(losses(LossType.RESCALED_MSE)["vb"], losses(LossType.MSE)["vb"] * 0.25)
    torch.testing.assert_close(losses(LossType.RESCALED_KL)["loss"], losses(LossType.KL)["loss"] * 250)


def test_training_losses_return_the_implied_x0():
    diffusion = make_diffusion(mean=ModelMeanType.VELOCITY)
    x_start, noise = torch.randn(2, 2, 1, 4, 4).unbind(0)
    t = torch.tensor([10, 900])
    true_v = diffusion._predict_v(x_start, t, noise)
    terms = diffusion.training_losses(constant_model(true_v), x_start, t, noise=noise)
    torch.testing.assert_close(terms["mse"], torch.zeros(2))
    torch.testing.assert_close(terms["pred_xstart"], x_start, rtol=0, atol=1e-5)


def test_model_output_shape_is_checked():
    diffusion = make_diffusion(var=ModelVarType.LEARNED_RANGE)
    with pytest.raises(ValueError, match=r"expected shape \(1, 2, 2, 2\) for LEARNED_RANGE"):
        diffusion.training_losses(constant_model(torch.zeros(1, 1, 2, 2)), torch.zeros(1, 1, 2, 2),
                                  torch.tensor([3]))


# --- normalisation and sampling helper ------------------------------------------------------------------------------

def test_heatmap_scaling_round_trip():
    scaling = HeatmapScaling(3.0)
    heatmap = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(scaling.to_diffusion(heatmap), torch.tensor([-3.0, -1.5, 0.0, 3.0]))
    torch.testing.assert_close(scaling.to_heatmap(scaling.to_diffusion(heatmap)), heatmap)
    with pytest.raises(ValueError, match="diff_normalization"):
        HeatmapScaling(0.0)


def test_std_normalized_input_rescales_only_the_network_input():
    seen = {}

    def network(x, t, context):
        seen.update(x=x, t=t, context=context)
        return x * 0 + 7.0

    wrapped = StdNormalizedInput(network)
    x_t = torch.randn(3, 2, 4, 4) * torch.tensor([0.5, 2.0, 9.0]).reshape(3, 1, 1, 1)
    x_t_before = x_t.clone()
    t, context = torch.tensor([1, 2, 3]), torch.randn(3, 5)
    output = wrapped(x_t, t, context=context)
    assert torch.equal(x_t, x_t_before) and torch.equal(output, torch.full_like(x_t, 7.0))
    torch.testing.assert_close(seen["x"].std(dim=(1, 2, 3)), torch.ones(3))
    torch.testing.assert_close(seen["x"] * x_t.std(dim=(1, 2, 3), keepdim=True), x_t)
    assert seen["t"] is t and seen["context"] is context
    wrapped(torch.zeros(1, 1, 2, 2), t[:1], context=context[:1])
    assert torch.isfinite(seen["x"]).all()


def test_std_normalized_input_leaves_the_sampling_state_alone():
    # The original rescaled the sampling state itself; here an x_0 oracle's chain must not notice the wrapper.
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10", predict_xstart=True)
    x_start = torch.rand(1, 1, 4, 4) * 2 - 1
    noise = torch.randn(1, 1, 4, 4)
    plain = diffusion.ddim_sample_loop_progressive(constant_model(x_start), x_start.shape, noise=noise)
    wrapped = diffusion.ddim_sample_loop_progressive(StdNormalizedInput(constant_model(x_start)), x_start.shape,
                                                     noise=noise)
    for a, b in zip(plain, wrapped, strict=True):
        assert torch.equal(a["sample"], b["sample"])


class CountingNetwork(torch.nn.Module):
    """x_t * 0.9 + the conditioning, counting its calls and checking the conditioning object is reused."""

    def __init__(self, conditioning):
        super().__init__()
        self.conditioning = conditioning
        self.calls = 0
        self.scale = torch.nn.Parameter(torch.tensor(0.9))

    def forward(self, x, t, conditioning):
        assert conditioning is self.conditioning
        self.calls += 1
        return self.scale * x + conditioning


@pytest.mark.parametrize("respacing,expected_sampler,steps", [("ddim10", "ddim", 10), ("", "ddpm", 100)])
def test_sample_heatmaps_follows_the_original_sampler_rule(respacing, expected_sampler, steps):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing=respacing, predict_xstart=True, clip_range=3.0)
    assert default_sampler(diffusion) == expected_sampler
    conditioning = torch.randn(2, 1, 4, 4) * 0.1
    network = CountingNetwork(conditioning)
    noise = torch.randn(2, 1, 4, 4)
    torch.manual_seed(0)
    sample = sample_heatmaps(diffusion, network, {"conditioning": conditioning}, noise.shape, clip_denoised=True,
                             noise=noise)
    assert network.calls == steps
    loop = diffusion.ddim_sample_loop if expected_sampler == "ddim" else diffusion.p_sample_loop
    torch.manual_seed(0)
    expected = loop(network, noise.shape, noise=noise, clip_denoised=True, model_kwargs={"conditioning": conditioning})
    assert torch.equal(sample, expected)


def test_sample_heatmaps_sampler_choice_and_errors():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="ddim10", predict_xstart=True)
    conditioning = torch.zeros(1, 1, 2, 2)
    network = CountingNetwork(conditioning)
    noise = torch.randn(1, 1, 2, 2)
    torch.manual_seed(0)
    forced = sample_heatmaps(diffusion, network, {"conditioning": conditioning}, noise.shape, sampler="ddpm",
                             clip_denoised=False, noise=noise)
    torch.manual_seed(0)
    expected = diffusion.p_sample_loop(network, noise.shape, noise=noise, clip_denoised=False,
                                       model_kwargs={"conditioning": conditioning})
    assert torch.equal(forced, expected)
    with pytest.raises(ValueError, match="sampler"):
        sample_heatmaps(diffusion, network, {"conditioning": conditioning}, noise.shape, sampler="plms",
                        clip_denoised=False)
    with pytest.raises(ValueError, match="DDPM sampling has no eta"):
        sample_heatmaps(diffusion, network, {"conditioning": conditioning}, noise.shape, sampler="ddpm", eta=0.5,
                        clip_denoised=False)


def test_create_gaussian_diffusion_options():
    diffusion = create_gaussian_diffusion(steps=100, predict_v=True, learn_sigma=True, clip_range=3.0)
    assert diffusion.model_mean_type is ModelMeanType.VELOCITY
    assert diffusion.model_var_type is ModelVarType.LEARNED_RANGE
    assert diffusion.clip_range == 3.0 and diffusion.timestep_map == list(range(100))
    np.testing.assert_allclose(create_gaussian_diffusion(steps=100, factor_multiplier=2.0).betas,
                               2 * get_named_beta_schedule("linear", 100), rtol=1e-12)
    with pytest.raises(ValueError, match="predict_xstart and predict_v"):
        create_gaussian_diffusion(predict_xstart=True, predict_v=True)
