"""Gaussian diffusion after openai/guided-diffusion: schedules, posteriors, training losses, DDPM and DDIM samplers.

The process calls `model(x_t, t, **model_kwargs)` and knows nothing of what it diffuses; heatmap scaling lives in
diffusion/normalization.py.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl

MAX_BETA = 0.999
BETA_SCHEDULES = ("linear", "cosine")
# Per-timestep weights of the MSE term (Min-SNR-gamma, Hang et al. 2023); "min_snr_K" / "max_snr_K" carry a number K.
MSE_LOSS_WEIGHT_TYPES = ("constant", "min_snr_K", "max_snr_K", "trunc_snr", "snr", "inv_snr")


def get_named_beta_schedule(
    schedule_name: str, num_diffusion_timesteps: int, factor_multiplier: float = 1.0
) -> np.ndarray:
    """The betas of a named noise schedule, float64 of shape [T].

    - "linear": Ho et al.'s betas from 1e-4 to 0.02 over 1000 steps with both ends scaled by 1000 / T, so that any
      T gives about the same process (guided-diffusion's scaled linear schedule).
    - "cosine": Nichol & Dhariwal's abar(s) = cos^2((s + 0.008) / 1.008 * pi / 2), each beta capped at 0.999.

    `factor_multiplier` f multiplies every beta (f > 1 destroys the signal faster: a lower SNR at every t), and the
    result is capped at 0.999 so that abar stays positive. f = 1 returns guided-diffusion's schedules unchanged
    wherever their betas stay <= 0.999 (for "linear", every T >= 21).
    """
    if not isinstance(num_diffusion_timesteps, int) or num_diffusion_timesteps < 1:
        raise ValueError(f"num_diffusion_timesteps: expected a positive int, found {num_diffusion_timesteps!r}")
    if not (math.isfinite(factor_multiplier) and factor_multiplier > 0):
        raise ValueError(f"factor_multiplier: expected a finite number > 0, found {factor_multiplier!r}")
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps
        betas = np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    elif schedule_name == "cosine":
        betas = betas_for_alpha_bar(num_diffusion_timesteps, _cosine_alpha_bar)
    else:
        raise ValueError(f"noise schedule: expected one of {BETA_SCHEDULES}, found {schedule_name!r}")
    return np.minimum(betas * factor_multiplier, MAX_BETA)


def rescale_zero_terminal_snr(betas) -> np.ndarray:
    """Betas whose last abar is exactly 0 (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    flawed", algorithm 1): sqrt(abar) is shifted so that its last value is 0 and scaled so that its first value is
    unchanged. The last beta becomes 1: x_{T-1} is pure noise, as the sampler's starting point assumes.
    """
    betas = np.asarray(betas, dtype=np.float64)
    sqrt_alpha_bar = np.sqrt(np.cumprod(1.0 - betas))
    first, last = sqrt_alpha_bar[0], sqrt_alpha_bar[-1]
    if not first > last:
        raise ValueError("betas: zero terminal SNR needs abar to decrease from the first to the last step")
    alpha_bar = ((sqrt_alpha_bar - last) * (first / (first - last))) ** 2
    return 1.0 - alpha_bar / np.append(1.0, alpha_bar[:-1])


def parse_mse_loss_weight_type(name: str) -> tuple[str, float | None]:
    """("min_snr", 5.0) for "min_snr_5"; (name, None) for the types without a number. ValueError for anything else."""
    for prefix in ("min_snr_", "max_snr_"):
        if isinstance(name, str) and name.startswith(prefix):
            try:
                k = float(name[len(prefix):])
            except ValueError:
                k = float("nan")
            if not (math.isfinite(k) and k > 0):
                raise ValueError(f"mse_loss_weight_type {name!r}: expected {prefix}K with a number K > 0, e.g. "
                                 f"{prefix}5")
            return prefix[:-1], k
    if name not in ("constant", "trunc_snr", "snr", "inv_snr"):
        raise ValueError(f"mse_loss_weight_type: expected one of {MSE_LOSS_WEIGHT_TYPES} (K a number > 0), "
                         f"found {name!r}")
    return name, None


def mse_loss_weights(alphas_cumprod: np.ndarray, weight_type: str, mean_type: "ModelMeanType") -> np.ndarray:
    """The per-timestep weight [T] of the MSE on the network's target, float64.

    Every type is defined as a weight w(SNR) of the x_0 error, SNR = abar / (1 - abar): min_snr_K min(SNR, K),
    max_snr_K max(SNR, K), trunc_snr max(SNR, 1), snr SNR, inv_snr 1 / SNR. The eps error is SNR times the x_0
    error and the v error (SNR + 1) times, so on those targets the weight is w / SNR and w / (SNR + 1): the same
    objective whatever the network predicts. "constant" is 1 on every target. Where SNR = 0 (a zero-terminal-SNR
    step) the weight is 1.
    """
    kind, k = parse_mse_loss_weight_type(weight_type)
    if kind == "constant":
        return np.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    with np.errstate(divide="ignore", invalid="ignore"):
        x0_weight = {"min_snr": lambda: np.minimum(snr, k), "max_snr": lambda: np.maximum(snr, k),
                     "trunc_snr": lambda: np.maximum(snr, 1.0), "snr": lambda: snr, "inv_snr": lambda: 1.0 / snr}[kind]()
        if mean_type is ModelMeanType.EPSILON:
            weight = x0_weight / snr
        elif mean_type is ModelMeanType.VELOCITY:
            weight = x0_weight / (snr + 1.0)
        else:
            weight = x0_weight
    return np.where(snr == 0, 1.0, weight)


def offset_noise_like(x: torch.Tensor, strength: float) -> torch.Tensor:
    """eps + strength * delta with eps ~ N(0, I) of x's shape and one delta ~ N(0, 1) per sample and channel
    (offset noise, Crosslabs 2023): the noise then also shifts the mean of each channel, which plain N(0, I) noise
    almost never does."""
    delta = torch.randn(*x.shape[:2], *([1] * (x.ndim - 2)), device=x.device, dtype=x.dtype)
    return torch.randn_like(x) + strength * delta


def _cosine_alpha_bar(s: float) -> float:
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def betas_for_alpha_bar(
    num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = MAX_BETA
) -> np.ndarray:
    """Betas that discretise a continuous abar(s), s in [0, 1]: beta_i = 1 - abar((i + 1) / T) / abar(i / T).

    Each beta is capped at `max_beta`: the cosine abar reaches 0 at s = 1, which would make the last beta 1.
    """
    steps = num_diffusion_timesteps
    return np.array(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)],
        dtype=np.float64,
    )


class ModelMeanType(enum.Enum):
    """What the network predicts, from which the mean of p(x_{t-1} | x_t) follows."""

    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise eps of x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
    VELOCITY = enum.auto()  # v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022)


class ModelVarType(enum.Enum):
    """Where the variance of p(x_{t-1} | x_t) comes from."""

    LEARNED = enum.auto()  # the network outputs the log-variance
    FIXED_SMALL = enum.auto()  # the posterior variance beta~_t
    FIXED_LARGE = enum.auto()  # beta_t
    LEARNED_RANGE = enum.auto()  # the network interpolates the log-variance between beta~_t and beta_t


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE on the mean parameterisation (+ the VB term when the variance is learned)
    RESCALED_MSE = enum.auto()  # MSE + VB * T / 1000 when the variance is learned
    KL = enum.auto()  # the variational bound term of one timestep
    RESCALED_KL = enum.auto()  # the VB term times T: an estimate of the whole bound

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def _require_member(key: str, value, enum_type: type[enum.Enum]) -> None:
    if not isinstance(value, enum_type):
        raise TypeError(f"{key}: expected a {enum_type.__name__} member, found {value!r}")


def _check_timesteps(timesteps: torch.Tensor, broadcast_shape: Sequence[int]) -> None:
    if timesteps.ndim != 1 or timesteps.shape[0] != broadcast_shape[0]:
        raise ValueError(
            f"timesteps: expected a 1-D tensor of {broadcast_shape[0]} indices (one per sample), "
            f"found shape {tuple(timesteps.shape)}"
        )


def _extract_into_tensor(arr: np.ndarray, timesteps: torch.Tensor, broadcast_shape: Sequence[int]) -> torch.Tensor:
    """arr[timesteps] as float32 on the timesteps' device, broadcast to `broadcast_shape` ([B, ...])."""
    _check_timesteps(timesteps, broadcast_shape)
    # Cast before moving: some devices (MPS) hold no float64. Casting before or after indexing gives the same values.
    values = torch.from_numpy(arr).float().to(timesteps.device, non_blocking=True)[timesteps]  # no stream sync
    return values.reshape(-1, *([1] * (len(broadcast_shape) - 1))).expand(*broadcast_shape)


# Public for the formulations that make their own steps over this process's schedule (formulations/point.py).
extract_into_tensor = _extract_into_tensor


def _half_log_snr(alpha_bar: float) -> float:
    """lambda = log(sqrt(abar) / sqrt(1 - abar)), -inf where abar = 0 (zero terminal SNR)."""
    return -math.inf if alpha_bar == 0 else 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def sampling_device(model, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    raise ValueError("device: the model has no parameters to take the sampling device from; pass device= or noise=")


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion with T = len(betas) steps, indexed t = 0 (least noise) .. T - 1.

    Names and semantics are guided-diffusion's; schedule arrays are float64 numpy, cast to float32 when extracted
    for a batch of timesteps. With `rescale_timesteps` the network sees t * 1000 / T instead of the index t.
    Where this differs from guided-diffusion:
    - `clip_denoised` clamps the predicted x_0 to [-clip_range, clip_range] rather than [-1, 1], so data on another
      range (heatmaps on [-v, v]) are clipped to their own range;
    - v-prediction (VELOCITY) is added and x_{t-1}-prediction is left out;
    - eps is re-derived from x_0 as (x_t - sqrt(abar) x_0) / sqrt(1 - abar), finite also where abar = 0
      (zero terminal SNR), which only x_0 and v prediction accept;
    - `mse_loss_weight_type` weights the MSE per timestep (see `mse_loss_weights`; "constant" = guided-diffusion);
    - `offset_noise_strength` s > 0 trains on offset noise (`offset_noise_like`) when no noise is passed in;
    - samplers can start at an intermediate step (`start_step`, for SDEdit) and DPM-Solver++(2M) is added.
    """

    def __init__(
        self,
        betas,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
        clip_range: float = 1.0,
        mse_loss_weight_type: str = "constant",
        offset_noise_strength: float = 0.0,
    ):
        _require_member("model_mean_type", model_mean_type, ModelMeanType)
        _require_member("model_var_type", model_var_type, ModelVarType)
        _require_member("loss_type", loss_type, LossType)
        if not (math.isfinite(clip_range) and clip_range > 0):
            raise ValueError(f"clip_range: expected a finite number > 0, found {clip_range!r}")
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.shape[0] < 1:
            raise ValueError(f"betas: expected a 1-D array of at least 1 step, found shape {betas.shape}")
        if not ((betas > 0) & (betas <= 1)).all():
            raise ValueError(f"betas: expected every beta in (0, 1], found min {betas.min()} and max {betas.max()}")

        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self.clip_range = float(clip_range)
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        if model_mean_type is ModelMeanType.EPSILON and self.alphas_cumprod[-1] == 0:
            raise ValueError(
                "model_mean_type: EPSILON cannot recover x_0 where abar = 0 (a zero-terminal-SNR schedule, "
                "last beta 1); predict START_X or VELOCITY"
            )
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        # Infinite at a zero-terminal-SNR step; only EPSILON prediction reads these, and it is rejected there.
        with np.errstate(divide="ignore"):
            self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
            self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.log_betas = np.log(betas)
        self.mse_loss_weight_type = mse_loss_weight_type
        self.mse_loss_weights = mse_loss_weights(self.alphas_cumprod, mse_loss_weight_type, model_mean_type)
        if not (math.isfinite(offset_noise_strength) and offset_noise_strength >= 0):
            raise ValueError(f"offset_noise_strength: expected a finite number >= 0, found {offset_noise_strength!r}")
        self.offset_noise_strength = float(offset_noise_strength)
        # abar of the point a DDIM step lands on: the previous point of this process's grid (see SpacedDiffusion).
        self.ddim_alphas_cumprod_prev = self.alphas_cumprod_prev

        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The posterior variance is 0 at t = 0; its log borrows the value at t = 1 to stay finite (beta_0 for a
        # one-step process, e.g. one sampling step from T-1: its only step adds no noise, so the value is unused).
        borrowed = self.posterior_variance[1] if self.num_timesteps > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(borrowed, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

        # FIXED_LARGE is beta_t, except at t = 0 where the posterior variance of t = 1 gives a better decoder NLL.
        fixed_large = np.append(borrowed, betas[1:])
        self._fixed_variances = {
            ModelVarType.FIXED_SMALL: (self.posterior_variance, self.posterior_log_variance_clipped),
            ModelVarType.FIXED_LARGE: (fixed_large, np.log(fixed_large)),
        }

    # --- the forward process q ---------------------------------------------------------------------------------

    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_t | x_0), each of x_start's shape."""
        mean = _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = _extract_into_tensor(1.0 - self.alphas_cumprod, t, x_start.shape)
        log_variance = _extract_into_tensor(self.log_one_minus_alphas_cumprod, t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        if noise is None:
            noise = torch.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise: expected shape {tuple(x_start.shape)} of x_start, found {tuple(noise.shape)}")
        return (
            _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of the posterior q(x_{t-1} | x_t, x_0)."""
        if x_start.shape != x_t.shape:
            raise ValueError(f"x_start: expected the shape {tuple(x_t.shape)} of x_t, found {tuple(x_start.shape)}")
        mean = (
            _extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + _extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        variance = _extract_into_tensor(self.posterior_variance, t, x_t.shape)
        log_variance = _extract_into_tensor(self.posterior_log_variance_clipped, t, x_t.shape)
        return mean, variance, log_variance

    # --- conversions between x_0, eps and v --------------------------------------------------------------------

    def _predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (
            _extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

    def _predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        # Divides by sqrt(1 - abar) rather than guided-diffusion's sqrt(1 / abar - 1), which is 0 where abar = 0;
        # this form stays finite at every t.
        return (
            x_t - _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_t.shape) * pred_xstart
        ) / _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape)

    def _predict_xstart_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (
            _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
            - _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * v
        )

    def _predict_v(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return (
            _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * noise
            - _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * x_start
        )

    def _predict_xstart(self, mean_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.model_mean_type is ModelMeanType.START_X:
            return mean_output
        if self.model_mean_type is ModelMeanType.EPSILON:
            return self._predict_xstart_from_eps(x_t, t, mean_output)
        return self._predict_xstart_from_v(x_t, t, mean_output)

    # --- the reverse process p ---------------------------------------------------------------------------------

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep values the network sees for indices t of this process."""
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t

    def _split_model_output(self, model_output: torch.Tensor, x: torch.Tensor):
        """(mean parameterisation, variance channels or None) of a network output for input x."""
        batch, channels = x.shape[:2]
        learned = self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)
        expected = (batch, 2 * channels if learned else channels, *x.shape[2:])
        if tuple(model_output.shape) != expected:
            raise ValueError(
                f"model output: expected shape {expected} for {self.model_var_type.name} variance, "
                f"found {tuple(model_output.shape)}"
            )
        if learned:
            return torch.split(model_output, channels, dim=1)
        return model_output, None

    def model_output(self, model, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None = None):
        """(mean parameterisation, variance channels or None) of `model(x, t', **model_kwargs)` at grid indices t,
        t' being the timesteps the network sees (`_scale_timesteps`): the one place the process calls the network."""
        model_kwargs = {} if model_kwargs is None else model_kwargs
        _check_timesteps(t, x.shape)
        return self._split_model_output(model(x, self._scale_timesteps(t), **model_kwargs), x)

    def weight_mse(self, mse: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A per-sample MSE [B] times the weight of its timestep (`mse_loss_weight_type`; "constant" leaves it)."""
        if self.mse_loss_weight_type == "constant":
            return mse
        return _extract_into_tensor(self.mse_loss_weights, t, t.shape) * mse

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None) -> dict:
        """Run the network on x_t and return p(x_{t-1} | x_t) and its x_0 prediction.

        :param denoised_fn: applied to the predicted x_0 before clipping and before it sets the mean.
        :param clip_denoised: clamp the predicted x_0 to [-clip_range, clip_range].
        :return: dict of "mean", "variance", "log_variance" and "pred_xstart", each of x's shape.
        """
        mean_output, variance_output = self.model_output(model, x, t, model_kwargs)

        if self.model_var_type is ModelVarType.LEARNED:
            model_log_variance = variance_output
            model_variance = torch.exp(model_log_variance)
        elif self.model_var_type is ModelVarType.LEARNED_RANGE:
            min_log = _extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
            max_log = _extract_into_tensor(self.log_betas, t, x.shape)
            # The network's [-1, 1] spans log beta~_t .. log beta_t.
            fraction = (variance_output + 1) / 2
            model_log_variance = fraction * max_log + (1 - fraction) * min_log
            model_variance = torch.exp(model_log_variance)
        else:
            variance, log_variance = self._fixed_variances[self.model_var_type]
            model_variance = _extract_into_tensor(variance, t, x.shape)
            model_log_variance = _extract_into_tensor(log_variance, t, x.shape)

        pred_xstart = self._predict_xstart(mean_output, x, t)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-self.clip_range, self.clip_range)
        model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": model_mean, "variance": model_variance, "log_variance": model_log_variance,
                "pred_xstart": pred_xstart}

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None) -> dict:
        """Draw x_{t-1} ~ p(x_{t-1} | x_t) (no noise is added at t = 0). Returns "sample" and "pred_xstart"."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = torch.randn_like(x)
        nonzero_mask = (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0) -> dict:
        """One DDIM step from x_t to the previous point of this process's grid (Song et al. 2021, eq. 12).

        eta = 0 is deterministic; eta = 1 has the variance of ancestral sampling.
        """
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta: expected a number in [0, 1], found {eta!r}")
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        # Whatever the network predicts, the step uses the eps implied by the (clipped) x_0 prediction.
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        mean_pred, sigma = self.ddim_mean_and_sigma(x, t, out["pred_xstart"], eps, eta)
        noise = torch.randn_like(x)
        nonzero_mask = (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))
        return {"sample": mean_pred + nonzero_mask * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def ddim_mean_and_sigma(self, x: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor, eps: torch.Tensor,
                            eta: float):
        """(mean, sigma) of the DDIM step from x_t (Song et al. 2021, eq. 12) given its x_0 and eps estimates: the
        step lands on `ddim_alphas_cumprod_prev`, mean = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)."""
        alpha_bar = _extract_into_tensor(self.alphas_cumprod, t, x.shape)
        alpha_bar_prev = _extract_into_tensor(self.ddim_alphas_cumprod_prev, t, x.shape)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        # Round-off can take 1 - abar_prev - sigma^2 a hair below 0 at eta = 1.
        eps_scale = torch.sqrt((1 - alpha_bar_prev - sigma**2).clamp(min=0.0))
        return pred_xstart * torch.sqrt(alpha_bar_prev) + eps_scale * eps, sigma

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                      device=None, progress=False, start_step=None, state_fn=None) -> torch.Tensor:
        """Ancestral sampling through every step of this process, from `noise` (or fresh N(0, I)) at t = T - 1.

        The device is noise's, else `device`, else that of the model's parameters. `start_step` s starts the
        reverse process at index s instead of T - 1 (then `noise` is the state x_s, e.g. a partially noised image
        for SDEdit). `state_fn`, if given, replaces the state x_t by state_fn(x_t) before each step.
        """
        final = None
        for final in self.p_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                                    device, progress, start_step, state_fn):
            pass
        return final["sample"]

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                  model_kwargs=None, device=None, progress=False, start_step=None,
                                  state_fn=None) -> Iterator[dict]:
        """Like p_sample_loop, yielding p_sample's dict at every step."""
        return self.sample_loop_progressive(self.p_sample, model, shape, noise, device, progress, start_step,
                                             state_fn, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                                             model_kwargs=model_kwargs)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                         device=None, progress=False, eta=0.0, start_step=None, state_fn=None) -> torch.Tensor:
        """DDIM sampling through every step of this process (respace it for fewer steps); arguments as p_sample_loop."""
        final = None
        for final in self.ddim_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                                       device, progress, eta, start_step, state_fn):
            pass
        return final["sample"]

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                     model_kwargs=None, device=None, progress=False, eta=0.0, start_step=None,
                                     state_fn=None) -> Iterator[dict]:
        """Like ddim_sample_loop, yielding ddim_sample's dict at every step."""
        return self.sample_loop_progressive(self.ddim_sample, model, shape, noise, device, progress, start_step,
                                             state_fn, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                                             model_kwargs=model_kwargs, eta=eta)

    def dpm_solver_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                               model_kwargs=None, device=None, progress=False, start_step=None,
                               state_fn=None) -> torch.Tensor:
        """DPM-Solver++(2M) (Lu et al. 2022, multistep second order in the data prediction) through every step of
        this process (respace it for fewer steps); arguments as p_sample_loop."""
        final = None
        for final in self.dpm_solver_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn,
                                                             model_kwargs, device, progress, start_step, state_fn):
            pass
        return final["sample"]

    def dpm_solver_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                           model_kwargs=None, device=None, progress=False, start_step=None,
                                           state_fn=None) -> Iterator[dict]:
        """Like dpm_solver_sample_loop, yielding {"sample", "pred_xstart"} at every step.

        With alpha_i = sqrt(abar_i), sigma_i = sqrt(1 - abar_i), lambda_i = log(alpha_i / sigma_i), the step from
        grid point s to t (h = lambda_t - lambda_s) is x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) D with
        D = x0_s (first order) or x0_s + (x0_s - x0_prev) h / (2 h_prev) (second order, "midpoint"). As diffusers'
        DPMSolverMultistepScheduler (solver_order 2, final sigma 0): the first step is first order (no history yet)
        and the last step goes to sigma = 0, i.e. returns the x_0 prediction at t = 0. One network call per step.
        """
        history: list[tuple[float, torch.Tensor]] = []  # (lambda, x0 prediction) of the previous grid point

        def step(model, x, t, clip_denoised, denoised_fn, model_kwargs):
            out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
            index = int(t[0])
            x0 = out["pred_xstart"]
            lambda_s = _half_log_snr(self.alphas_cumprod[index])
            if index == 0:
                return {"sample": x0, "pred_xstart": x0}
            abar_s, abar_t = self.alphas_cumprod[index], self.alphas_cumprod[index - 1]
            alpha_t, sigma_s, sigma_t = math.sqrt(abar_t), math.sqrt(1 - abar_s), math.sqrt(1 - abar_t)
            h = _half_log_snr(abar_t) - lambda_s
            phi = alpha_t * math.expm1(-h)  # alpha_t (e^-h - 1), exact also for small h
            data = x0
            second_order = bool(history) and math.isfinite(history[-1][0])
            if second_order:
                lambda_prev, x0_prev = history[-1]
                data = x0 + (x0 - x0_prev) * (0.5 * h / (lambda_s - lambda_prev))
            history[:] = [(lambda_s, x0)]
            return {"sample": (sigma_t / sigma_s) * x - phi * data, "pred_xstart": x0}

        return self.sample_loop_progressive(step, model, shape, noise, device, progress, start_step, state_fn,
                                             clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                                             model_kwargs=model_kwargs)

    def sample_loop_progressive(self, step, model, shape, noise, device, progress, start_step=None, state_fn=None,
                                 **step_kwargs) -> Iterator[dict]:
        """The loop every sampler of this process runs: from `noise` (or fresh N(0, I) of `shape`) at grid index
        `start_step` (T - 1 if None) down to 0, x <- step(model, x, t, **step_kwargs)["sample"] without gradients,
        yielding each step's dict ("sample", "pred_xstart"); `state_fn`, if given, replaces x by state_fn(x) first.
        A new sampler is a `step` function over this loop (see diffusion.sampling.register_sampler)."""
        shape = tuple(shape)
        if start_step is None:
            start_step = self.num_timesteps - 1
        if not (isinstance(start_step, int) and 0 <= start_step < self.num_timesteps):
            raise ValueError(f"start_step: expected an index in [0, {self.num_timesteps}), found {start_step!r}")
        if noise is None:
            sample = torch.randn(*shape, device=sampling_device(model, device))
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise: expected shape {shape}, found {tuple(noise.shape)}")
        else:
            sample = noise
        indices = range(start_step, -1, -1)
        for i in tqdm(indices) if progress else indices:
            t = torch.full((shape[0],), i, dtype=torch.long, device=sample.device)
            if state_fn is not None:
                sample = state_fn(sample)
            with torch.no_grad():
                out = step(model, sample, t, **step_kwargs)
            yield out
            sample = out["sample"]

    # --- training ----------------------------------------------------------------------------------------------

    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None) -> dict:
        """One term of the variational bound in bits per dimension, [B].

        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0, the decoder NLL -log p(x_0 | x_1) at t = 0.
        The decoder NLL is guided-diffusion's discretised Gaussian, which assumes 8-bit data on [-1, 1]; it is kept
        for parity, but for heatmaps on [-v, v] it is only an approximate likelihood.
        Returns "output" and the "pred_xstart" of p_mean_variance.
        """
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / math.log(2.0)
        decoder_nll = -mean_flat(
            discretized_gaussian_log_likelihood(x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        ) / math.log(2.0)
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None) -> dict:
        """Losses of one training step at timesteps t, each of shape [B].

        :param noise: the eps of q_sample; if None, drawn as N(0, I), or as offset noise when
            offset_noise_strength > 0.
        :return: dict with "loss"; with an MSE loss also "mse", and "vb" when the variance is learned (its gradient
            reaches only the variance channels: the mean output enters the VB term detached); and "pred_xstart",
            the unclipped x_0 implied by the network output, with its gradient, for extra losses on x_0, and
            "model_output", that output itself (the mean channels).
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if noise is None:
            noise = (offset_noise_like(x_start, self.offset_noise_strength) if self.offset_noise_strength > 0
                     else torch.randn_like(x_start))
        x_t = self.q_sample(x_start, t, noise=noise)

        if self.loss_type.is_vb():
            vb = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False, model_kwargs=model_kwargs)
            scale = self.num_timesteps if self.loss_type is LossType.RESCALED_KL else 1.0
            return {"loss": vb["output"] * scale, "pred_xstart": vb["pred_xstart"]}

        mean_output, variance_output = self.model_output(model, x_t, t, model_kwargs)
        terms = {}
        if variance_output is not None:
            frozen_output = torch.cat([mean_output.detach(), variance_output], dim=1)
            terms["vb"] = self._vb_terms_bpd(
                lambda *_args, **_kwargs: frozen_output, x_start, x_t, t, clip_denoised=False
            )["output"]
            if self.loss_type is LossType.RESCALED_MSE:
                # guided-diffusion's hybrid loss: without 1/1000 the VB term swamps the MSE.
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)

        if self.model_mean_type is ModelMeanType.START_X:
            target = x_start
        elif self.model_mean_type is ModelMeanType.EPSILON:
            target = noise
        else:
            target = self._predict_v(x_start, t, noise)
        terms["mse"] = self.weight_mse(mean_flat((target - mean_output) ** 2), t)
        terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        terms["pred_xstart"] = self._predict_xstart(mean_output, x_t, t)
        terms["model_output"] = mean_output  # the network's raw (mean) output, whatever its target
        return terms
