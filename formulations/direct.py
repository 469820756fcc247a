"""The direct formulation (a `heatmap_decoder` of kind "direct", models/decoders.py): nothing is diffused; the decoder
predicts the heatmap from the backbone's features in one forward pass, trained on the target heatmap with
`direct_loss` (mse on the map, or bce on the logits of a sigmoid decoder) and weighted by `direct_loss_weight`.
Sampling is that one pass: K = 1, no sampler, no time grid."""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from diffusion.losses import mean_flat
from formulations.base import Formulation, TrainingTargets, register_formulation
from models.decoders import decoder_spec

# Options only a diffusion decoder reads (the "Diffusion process" group but `sampler`, which check_sampler covers, and
# the diffusion losses): set with a direct decoder they would change nothing, so they are an error.
DIFFUSION_OPTIONS = (
    "diffusion_target", "train_time_steps", "sample_time_steps", "ddim_eta", "sample_k", "schedule_type",
    "factor_multiplier", "adm", "predict_sthg", "adm_predict_xstart", "adm_predict_v", "adm_learn_sigma", "adm_use_kl",
    "adm_rescale_learned_sigmas", "adm_rescale_timesteps", "adm_sigma_small", "diff_normalization", "norm_std_flag",
    "clip_denoised", "offset_noise_strength", "noise_changer", "fix_snr", "eval_from_picture", "time_noise",
    "picture_source", "compat_original_ddim_step", "compat_original_std_state",
    "diffusion_weight", "mse_loss_weight_type", "extra_loss", "out_of_frame_diffusion_loss", "location_weight",
    "kl_weight", "softargmax_beta",
)


@register_formulation("direct")
class DirectFormulation(Formulation):
    """The heatmap decoder's map is the prediction; its loss is direct_loss on the in-frame samples."""

    diffuses = False
    loss_name = "loss_direct"

    def __init__(self, config):
        self.config = config
        self.spec = decoder_spec(config.heatmap_decoder)
        self.loss_weight = config.direct_loss_weight

    @classmethod
    def from_config(cls, config) -> "DirectFormulation":
        return cls(config)

    @classmethod
    def check_config(cls, config, at, changed=()) -> None:
        super().check_config(config, at, changed)
        spec = decoder_spec(config.heatmap_decoder)
        what = f"{at('heatmap_decoder')} = {config.heatmap_decoder!r}"
        unread = [name for name in DIFFUSION_OPTIONS if name in changed]
        if unread:
            verb = "configures" if len(unread) == 1 else "configure"
            raise ValueError(f"{', '.join(at(name) for name in unread)} {verb} the diffusion decoder, but {what} "
                             "predicts the heatmap in one forward pass (nothing is diffused or sampled)")
        if config.direct_loss == "bce" and spec.output != "sigmoid":
            raise ValueError(f"{at('direct_loss')} = 'bce' needs a heatmap that is a probability, but {what} outputs "
                             f"a linear map: use direct_loss mse, or a sigmoid decoder such as unet_direct_sigmoid")
        if config.unet_inout_channels != 1:
            raise ValueError(f"{what} predicts one heatmap channel; {at('unet_inout_channels')} is "
                             f"{config.unet_inout_channels}")

    def network(self, model):
        return model.heatmap_network

    def conditioning(self, model, features: dict) -> dict:
        return features

    def training_losses(self, model, features: dict, targets: TrainingTargets) -> dict[str, torch.Tensor]:
        rows = targets.rows
        if "decoded" in features:  # decoded for every row already (a decoder with its own in/out head)
            decoded = {name: value[rows] for name, value in features["decoded"].items()}
        else:
            batch = features["conditioning"].shape[0]
            decoded = self.network(model)({name: value[rows] for name, value in features.items()
                                           if isinstance(value, torch.Tensor) and value.shape[0] == batch})
        x_start = targets.heatmap[rows].unsqueeze(1)
        if self.config.direct_loss == "bce":
            loss = F.binary_cross_entropy_with_logits(decoded["heatmap_logits"].float(), x_start.float(),
                                                      reduction="none")
        else:
            loss = (decoded["heatmap"].float() - x_start.float()) ** 2
        return {"loss": mean_flat(loss), "pred_xstart": decoded["heatmap"], "x_start": x_start}

    def sample(self, network, conditioning: dict, batch_size: int, device: torch.device, autocast=nullcontext,
               start_heatmap: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if start_heatmap is not None:
            raise ValueError(f"heatmap_decoder {self.config.heatmap_decoder}: a direct decoder starts from no picture")
        with autocast():
            decoded = conditioning["decoded"] if "decoded" in conditioning else network(conditioning)
        heatmaps = decoded["heatmap"].float()[:, 0]
        out = {"heatmaps": heatmaps, "samples": heatmaps[:, None]}
        if "inout_logit" in decoded:
            out["inout_logit"] = decoded["inout_logit"].float()
        return out

    def summary(self) -> dict:
        return {"sampler": None, "sample_steps": None, "ddim_eta": None, "sample_k": 1, "diffusion_target": None,
                "formulation": self.name, "heatmap_decoder": self.config.heatmap_decoder,
                "sampling": "none: the direct decoder predicts the heatmap in one forward pass"}
