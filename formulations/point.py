"""diffusion_target: point, the formulation of the later DiffusionGaze branch `PointLoss` (Jan 2024): the process
diffuses the 2-D gaze point; the network sees a Gaussian heatmap rendered at the noisy point and predicts the clean
heatmap; sampling is DDIM on the point, whose x0 estimate is the argmax cell of the predicted heatmap.

Points are (x, y) normalised to [0, 1] (x = column); heatmaps are [B, 1, size, size]. `PointTarget` holds what the
process needs to know about the points: their scale in diffusion space, how the noisy point is brought back to
[0, 1]^2 and rendered. `PointTraining` is the training side shared with point_image (formulations/point_image.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from diffusion.gaussian_diffusion import LossType, ModelMeanType, ModelVarType, extract_into_tensor, sampling_device
from diffusion.losses import mean_flat
from diffusion.normalization import std_normalize
from formulations.base import TrainingTargets, last, register_formulation
from formulations.gaussian import DiffusionFormulation, diffusion_kwargs, rows_of


def render_point_heatmaps(points: torch.Tensor, size: int, sigma: int) -> torch.Tensor:
    """Heatmaps [B, 1, size, size] with a Gaussian of std `sigma` cells at each point [B, 2] ((x, y) in [0, 1]).

    As the original's `get_label_map_1`: the centre is the cell round(p * size) (round half to even), the Gaussian
    exp(-d^2 / (2 sigma^2)) is cut to the (6 sigma + 1)^2 window around it, and the map is divided by its maximum
    (so a centre just outside the grid still peaks at 1). A map whose window misses the grid is all zero.
    """
    if not (isinstance(sigma, int) and sigma >= 1):
        raise ValueError(f"point heatmap sigma: expected an int >= 1 (the original's window is 6 sigma + 1 cells), "
                         f"found {sigma!r}")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected shape [B, 2] ((x, y) in [0, 1]), found {tuple(points.shape)}")
    centre = torch.round(points.detach() * size)  # [B, 2], (column, row)
    cells = torch.arange(size, device=points.device, dtype=points.dtype)
    dx = cells[None, :] - centre[:, :1]  # [B, size] column offsets
    dy = cells[None, :] - centre[:, 1:]  # [B, size] row offsets
    window = 3 * sigma
    gx = torch.exp(-dx**2 / (2 * sigma**2)) * (dx.abs() <= window)
    gy = torch.exp(-dy**2 / (2 * sigma**2)) * (dy.abs() <= window)
    heatmaps = gy[:, :, None] * gx[:, None, :]  # [B, rows, columns]
    peak = heatmaps.amax(dim=(1, 2), keepdim=True)
    heatmaps = torch.where(peak > 0, heatmaps / peak.clamp(min=torch.finfo(heatmaps.dtype).tiny), heatmaps)
    return heatmaps[:, None]


def argmax_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """The cell of each heatmap's maximum [B, 1, H, W] -> [B, 2] ((x, y) = (column / W, row / H); the first maximum
    in row-major order on ties, as the original's `batch_argmax`)."""
    batch, _, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch, -1).argmax(dim=1)
    return torch.stack([(flat % width) / width, (flat // width) / height], dim=1).to(heatmaps.dtype)


# The point_image formulation's heatmap scale (the original's hard-coded `second_norm`).
POINT_IMAGE_HEATMAP_SCALE = 0.1


@dataclass(frozen=True)
class PointTarget:
    """How the point formulation maps points in and out of the diffusion.

    scale v: a point p in [0, 1]^2 diffuses as 2 v p - v (the original's `diff_normalization`). std_normalize: the
    noisy point is divided by its std over its two coordinates (torch's unbiased std, i.e. |x - y| / sqrt(2), the
    original's `norm_std_flag`) before it is clamped to [-v, v] and mapped back to [0, 1]. heatmap_size, sigma:
    the rendered heatmap (the original: 64 and `random_sigma`). heatmap_noise_scale s > 0 (the original's branch
    `point_image_diffusion`: s = 0.1): the rendered heatmap h is then diffused too, as x = 2 s h - s noised to the
    same t (std-normalised with std_normalize) before the network sees it; 0 = the network sees h (branch PointLoss).
    """

    scale: float
    heatmap_size: int
    sigma: int
    std_normalize: bool = True
    heatmap_noise_scale: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"point scale (diff_normalization): expected a finite number > 0, found {self.scale!r}")

    @classmethod
    def from_config(cls, config, heatmap_noise_scale: float = 0.0) -> "PointTarget":
        """Points scaled by diff_normalization, rendered at the heatmap size with sigma random_sigma (an integer, as
        the original's renderer needs; PointTraining.check_config says so when the configuration is read)."""
        return cls(scale=config.diff_normalization, heatmap_size=config.output_size, sigma=int(config.random_sigma),
                   std_normalize=config.norm_std_flag, heatmap_noise_scale=heatmap_noise_scale)

    def to_diffusion(self, points: torch.Tensor) -> torch.Tensor:
        return 2 * self.scale * points - self.scale

    def to_unit(self, x: torch.Tensor, std_normalize_point: bool) -> torch.Tensor:
        """A noisy diffusion-space point [B, 2] -> a point in [0, 1]^2 (std-normalised if asked, clamped)."""
        if std_normalize_point:
            x = std_normalize(x)
        return (x.clamp(-self.scale, self.scale) + self.scale) / (2 * self.scale)

    def render(self, points: torch.Tensor) -> torch.Tensor:
        return render_point_heatmaps(points, self.heatmap_size, self.sigma)


def check_point_process(diffusion) -> None:
    """The point formulation predicts the clean heatmap: x0 prediction, a fixed variance and the MSE loss only."""
    if (diffusion.model_mean_type is not ModelMeanType.START_X or diffusion.loss_type is not LossType.MSE
            or diffusion.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)):
        raise ValueError(
            "the point formulation predicts the clean heatmap from a heatmap rendered at the noisy point: it "
            f"needs x_0 prediction (START_X), a fixed variance and the MSE loss; this process has "
            f"{diffusion.model_mean_type.name}, {diffusion.model_var_type.name}, {diffusion.loss_type.name}"
        )


def point_training_losses(diffusion, model, x_start, x_point, t, target: PointTarget, model_kwargs=None, noise=None,
                          heatmap_noise=None) -> dict:
    """Losses of one training step of the point formulation at timesteps t of `diffusion`, each of shape [B].

    x_point [B, 2] ((x, y) in [0, 1]) is diffused as target.to_diffusion(x_point) with `noise` [B, 2] (N(0, I)
    if None); the noisy point is brought back to [0, 1]^2 (`target.to_unit`) and rendered (`target.render`); the
    network sees that heatmap and predicts the clean heatmap x_start [B, 1, H, W] (in the data's own range).
    With target.heatmap_noise_scale s > 0 the rendered heatmap h is first diffused as q_sample(2 s h - s, t,
    heatmap_noise) (N(0, I) if None) and std-normalised when target.std_normalize.
    :return: dict with "loss" = "mse" (weighted by mse_loss_weight_type), "pred_xstart" (the network's heatmap,
        with its gradient, for extra losses such as the soft-argmax location) and "x_t" (the rendered input).
    """
    check_point_process(diffusion)
    if noise is None:
        noise = torch.randn_like(x_point)
    x_t = diffusion.q_sample(target.to_diffusion(x_point), t, noise=noise)
    heatmap_t = target.render(target.to_unit(x_t, target.std_normalize)).to(x_start.dtype)
    if target.heatmap_noise_scale > 0:
        scale = target.heatmap_noise_scale
        heatmap_t = diffusion.q_sample(2 * scale * heatmap_t - scale, t, noise=heatmap_noise)
        if target.std_normalize:
            heatmap_t = std_normalize(heatmap_t)
    if heatmap_t.shape != x_start.shape:
        raise ValueError(f"x_start: expected the rendered heatmaps' shape {tuple(heatmap_t.shape)}, found "
                         f"{tuple(x_start.shape)}")
    model_output, _ = diffusion.model_output(model, heatmap_t, t, model_kwargs)
    mse = diffusion.weight_mse(mean_flat((x_start - model_output) ** 2), t)
    return {"loss": mse, "mse": mse, "pred_xstart": model_output, "model_output": model_output, "x_t": heatmap_t}


def point_ddim_sample(diffusion, model, x, t, target: PointTarget, clip_denoised=True, model_kwargs=None, eta=0.0,
                      first_step=False) -> dict:
    """One DDIM step of the point formulation from the point state x [B, 2] (diffusion space) at grid index t.

    The state is brought to [0, 1]^2 (std-normalised except at the first step, as in the original) and rendered;
    the network predicts the clean heatmap (clamped to [0, 1] with clip_denoised); its argmax cell is the x_0
    estimate of the point, from which eps and the DDIM step follow (guided-diffusion's eq. 12, landing on
    `ddim_alphas_cumprod_prev`). Returns "sample" (the next state [B, 2]), "pred_xstart" (the heatmap) and
    "pred_point" (the argmax point in [0, 1]^2).
    """
    check_point_process(diffusion)
    if target.heatmap_noise_scale > 0:
        raise ValueError("point_ddim_sample: with heatmap_noise_scale the network was trained on noised heatmaps "
                         "and samples a heatmap state (the heatmap samplers), not a point state")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected a number in [0, 1], found {eta!r}")
    heatmap_t = target.render(target.to_unit(x, target.std_normalize and not first_step)).to(x.dtype)
    pred_heatmap, _ = diffusion.model_output(model, heatmap_t, t, model_kwargs)
    if clip_denoised:
        pred_heatmap = pred_heatmap.clamp(0.0, 1.0)
    pred_point = argmax_points(pred_heatmap)
    x0 = target.to_diffusion(pred_point).clamp(-target.scale, target.scale)
    # guided-diffusion's form of eps (as the original); finite because the point formulation keeps abar > 0.
    eps = (extract_into_tensor(diffusion.sqrt_recip_alphas_cumprod, t, x.shape) * x - x0) / \
        extract_into_tensor(diffusion.sqrt_recipm1_alphas_cumprod, t, x.shape)
    mean_pred, sigma = diffusion.ddim_mean_and_sigma(x, t, x0, eps, eta)
    sample = mean_pred + sigma * torch.randn_like(x) if eta > 0 else mean_pred
    return {"sample": sample, "pred_xstart": pred_heatmap, "pred_point": pred_point}


def point_ddim_sample_loop_progressive(diffusion, model, batch_size: int, target: PointTarget, noise=None,
                                       clip_denoised=True, model_kwargs=None, device=None, progress=False,
                                       eta=0.0) -> Iterator[dict]:
    """DDIM sampling of the point formulation through every step of `diffusion` (respace it for fewer steps), from
    `noise` [B, 2] (or fresh N(0, I)) at t = T - 1; yields point_ddim_sample's dict at every step. The heatmap
    prediction of the last step (t = 0) is the result."""
    if noise is None:
        noise = torch.randn(batch_size, 2, device=sampling_device(model, device))
    elif tuple(noise.shape) != (batch_size, 2):
        raise ValueError(f"noise: expected shape {(batch_size, 2)} (one point per input), found "
                         f"{tuple(noise.shape)}")
    sample = noise
    indices = range(diffusion.num_timesteps - 1, -1, -1)
    for i in tqdm(indices) if progress else indices:
        t = torch.full((batch_size,), i, dtype=torch.long, device=sample.device)
        with torch.no_grad():
            out = point_ddim_sample(diffusion, model, sample, t, target, clip_denoised, model_kwargs, eta,
                                    first_step=i == diffusion.num_timesteps - 1)
        yield out
        sample = out["sample"]


class PointTraining(DiffusionFormulation):
    """The training side of the point formulations: the point diffused, the network on the rendered (point_image:
    also noised) heatmap, the MSE to the clean target heatmap in [0, 1]."""

    heatmap_noise_scale = 0.0

    def __init__(self, config):
        super().__init__(config)
        self.target = PointTarget.from_config(config, self.heatmap_noise_scale)

    @classmethod
    def check_config(cls, config, at, changed=()) -> None:
        super().check_config(config, at, changed)
        what = f"{at('diffusion_target')} = {config.diffusion_target!r}"
        kwargs = diffusion_kwargs(config)
        wrong = [name for name in ("predict_v", "learn_sigma", "use_kl") if kwargs.get(name)]
        if not kwargs["predict_xstart"] or wrong:
            given = ("'adm_predict_xstart', 'adm_predict_v', 'adm_learn_sigma', 'adm_use_kl'" if config.adm
                     else "'predict_sthg'")
            raise ValueError(f"{what} predicts the clean heatmap from a heatmap rendered at the noisy point: it needs "
                             f"x_0 prediction, a fixed variance and the MSE loss (adm_predict_xstart true and "
                             f"adm_predict_v, adm_learn_sigma, adm_use_kl false; or adm false with predict_sthg "
                             f"pred_x0); check {given}")
        sigma = config.random_sigma
        if float(sigma) != int(sigma) or sigma < 1:
            raise ValueError(f"{at('random_sigma')} = {sigma}: {what} renders the noisy point with an integer sigma "
                             ">= 1 (the original's window is 6 sigma + 1 cells)")
        if config.unet_inout_channels != 1:
            raise ValueError(f"{what} renders one heatmap channel; {at('unet_inout_channels')} is "
                             f"{config.unet_inout_channels}")
        for name, reason in (("noise_changer", "offset noise is drawn for a heatmap state only"),
                             ("fix_snr", "the point's DDIM step needs abar > 0 at every step")):
            if getattr(config, name):
                raise ValueError(f"{at(name)} is on, but {what} diffuses the gaze point: {reason}")

    def network(self, model):
        """The UNet as it is: norm_std_flag acts on the noisy point (and point_image's noised heatmap) instead."""
        return model.heatmap_network

    def training_losses(self, model, features: dict, targets: TrainingTargets) -> dict[str, torch.Tensor]:
        kwargs = rows_of(self.conditioning(model, features), targets.rows)
        x_start = targets.heatmap[targets.rows].unsqueeze(1)  # the network predicts the [0, 1] heatmap itself
        # One draw per sample: the point's noise, then (point_image) the rendered heatmap's.
        t, noise = targets.draw(self.training_diffusion.num_timesteps, (2 + x_start[0].numel(),))
        noise = noise.to(x_start.device, non_blocking=True)
        terms = point_training_losses(
            self.training_diffusion, self.network(model), x_start, targets.gaze_point[targets.rows].to(x_start.dtype),
            t.to(x_start.device, non_blocking=True), self.target, model_kwargs=kwargs, noise=noise[:, :2],
            heatmap_noise=noise[:, 2:].reshape(x_start.shape))
        return {"loss": terms["loss"], "pred_xstart": terms["pred_xstart"], "model_output": terms["model_output"],
                "x_start": x_start}


@register_formulation("point")
class PointFormulation(PointTraining):
    """Samples with its own DDIM over the point (sampler auto or ddim); K points per input, their predicted
    heatmaps averaged."""

    @classmethod
    def samplers(cls) -> tuple[str, ...]:
        return ("ddim",)

    @classmethod
    def check_config(cls, config, at, changed=()) -> None:
        super().check_config(config, at, changed)
        for name in ("eval_from_picture", "compat_original_std_state"):
            if getattr(config, name):
                raise ValueError(f"{at(name)} acts on a heatmap state, but {at('diffusion_target')} = 'point' "
                                 "diffuses the gaze point")

    def _steps(self, network, conditioning: dict, batch_size: int, device) -> Iterator[dict]:
        return point_ddim_sample_loop_progressive(self.sampling_diffusion, network, batch_size, self.target,
                                                  clip_denoised=self.config.clip_denoised, model_kwargs=conditioning,
                                                  device=device, eta=self.config.ddim_eta)

    def sample(self, network, conditioning: dict, batch_size: int, device: torch.device, autocast=nullcontext,
               start_heatmap: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The heatmaps the network predicts at the last step (in the data's range, [0, 1] with clip_denoised)."""
        if start_heatmap is not None:
            raise ValueError("diffusion_target point: sampling starts from a noisy point, not from a picture")
        k = self.config.sample_k
        if k > 1:
            conditioning = {name: value.repeat_interleave(k, dim=0) for name, value in conditioning.items()}
        with autocast():
            heatmaps = last(self._steps(network, conditioning, batch_size * k, device))["pred_xstart"]
            samples = heatmaps.reshape(batch_size, k, *heatmaps.shape[1:])
            heatmaps = samples.mean(dim=1)
        return {"heatmaps": heatmaps.float()[:, 0], "samples": samples.float()[:, :, 0]}

    def progressive(self, network, conditioning: dict, device: torch.device) -> Iterator[dict]:
        last_step = self.sampling_diffusion.num_timesteps - 1
        for i, out in enumerate(self._steps(network, conditioning, 1, device)):
            yield {"step": last_step - i, "pred_xstart": out["pred_xstart"].float()}

    def summary(self) -> dict:
        config = self.config
        return {"sampler": "ddim", "sample_steps": config.sample_time_steps, "ddim_eta": config.ddim_eta,
                "sample_k": config.sample_k, "diffusion_target": config.diffusion_target, "formulation": self.name,
                "heatmap_decoder": config.heatmap_decoder,
                "sampling": f"ddim over {self.sampling_steps} grid steps of the point state, the mean of the K = "
                            f"{config.sample_k} heatmaps predicted at the last step",
                **({"compat_original_ddim_step": True} if config.compat_original_ddim_step else {})}
