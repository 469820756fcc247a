"""Heatmap decoders by name (option `heatmap_decoder`): the network that turns the gaze backbone's features into the
heatmap, and the tiny registry (`HEATMAP_DECODERS`, `register_decoder`) that selects it.

Two kinds:
- "diffusion": a denoiser `net(x_t, t, context=[B, N, D], [spatial=[B, 4, H, W]]) -> [B, C', H, W]` that a diffusion
  formulation (formulations/) calls at every sampling step. Built in: `diffusion`, the
  cross-attention UNet (models/unet.py), every option as before.
- "direct": one forward pass `net(features) -> {"heatmap": [B, 1, H, W] in heatmap units, "heatmap_logits": the map
  before the sigmoid (decoders whose output is "sigmoid"), "inout_logit": [B] (decoders with their own in/out head,
  which then replaces the model's)}`, `features` being the backbone's output (`conditioning` [B, N, D],
  `scene_face_feat` [B, C, h, w], `spatial` with concat_scene, and whatever else a backbone returns). Trained by the
  direct formulation (formulations/direct.py) on the target heatmap. Built in: `unet_direct` (the same UNet called
  once, on an all-zero map at t = 0, as a regressor: linear output) and `unet_direct_sigmoid` (its output through a
  sigmoid, a per-cell probability as Gaze-LLE's head).

A decoder is built by `build(config, backbone)` (the class's `from_config(config, backbone)` when it has one) and
registered under the attribute name `module_name` of the model, the prefix of its state-dict keys: `unet` for the
built-in ones, `heatmap_decoder` by default (both read by the project's checkpoint naming, pretrained/renaming.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.gaze_diffusion import SCENE_CHANNELS
from models.unet import UNetModel

KINDS = ("diffusion", "direct")
OUTPUTS = ("linear", "sigmoid")


@dataclass(frozen=True)
class DecoderSpec:
    """A registered heatmap decoder: its builder and what the formulations need to know about it."""

    name: str
    kind: str  # "diffusion" or "direct"
    build: Callable[[Any, nn.Module], nn.Module]  # (config, gaze backbone) -> the network
    module_name: str  # the model attribute (state-dict prefix) it lives under
    output: str  # direct decoders: "linear" (the map itself) or "sigmoid" (also returns heatmap_logits)
    own_inout: bool  # direct decoders: returns "inout_logit" (the model then builds no in/out head)


HEATMAP_DECODERS: dict[str, DecoderSpec] = {}


def register_decoder(name: str, *, kind: str, module_name: str = "heatmap_decoder", output: str = "linear",
                     own_inout: bool = False):
    """Decorator adding a heatmap decoder (a class built by `from_config(config, backbone)` or `__init__(config,
    backbone)`, or a function (config, backbone) -> nn.Module) under `name`, the `heatmap_decoder` value that
    selects it."""
    if kind not in KINDS or output not in OUTPUTS:
        raise ValueError(f"register_decoder({name!r}): kind must be one of {KINDS} and output one of {OUTPUTS}, "
                         f"found {kind!r}, {output!r}")
    if kind == "diffusion" and (output != "linear" or own_inout):
        raise ValueError(f"register_decoder({name!r}): a diffusion decoder is a denoiser; output and own_inout "
                         "describe direct decoders")
    if module_name in ("gaze_backbone", "inout_head", "heatmap_network"):
        raise ValueError(f"register_decoder({name!r}): module_name {module_name!r} is taken by the model")

    def add(builder):
        if name in HEATMAP_DECODERS:
            raise ValueError(f"heatmap decoder {name!r} is registered twice")
        build = builder.from_config if hasattr(builder, "from_config") else builder
        HEATMAP_DECODERS[name] = DecoderSpec(name, kind, build, module_name, output, own_inout)
        return builder

    return add


def decoder_spec(name: str) -> DecoderSpec:
    if name not in HEATMAP_DECODERS:
        raise KeyError(f"unknown heatmap decoder {name!r}; registered: {sorted(HEATMAP_DECODERS)} (a plug-in of "
                       "backbone_plugins registers its name with @register_decoder)")
    return HEATMAP_DECODERS[name]


def unet_from_config(config, out_channels: int, cls: type[UNetModel] = UNetModel) -> UNetModel:
    """The cross-attention UNet of the UNet options (concat_scene adds the 4 scene channels)."""
    return cls(
        in_channels=config.unet_inout_channels,
        model_channels=config.unet_inplanes,
        out_channels=out_channels,
        num_res_blocks=config.unet_residual,
        attention_resolutions=list(config.list_unet_attention_levels),
        channel_mult=list(config.list_unet_inplanes_multipliers),
        num_heads=config.unet_spatial_tf_heads,
        transformer_depth=config.unet_spatial_tf_layers,
        context_dim=config.unet_context_vector,
        dropout=config.unet_dropout,
        conv_resample=config.conv_resample,
        use_scale_shift_norm=config.use_scale_shift_norm,
        resblock_updown=config.resblock_updown,
        spatial_channels=SCENE_CHANNELS if config.concat_scene else 0,
    )


@register_decoder("diffusion", kind="diffusion", module_name="unet")
def diffusion_unet(config, backbone: nn.Module) -> UNetModel:
    """The denoising UNet; a learned variance (Nichol & Dhariwal 2021) adds one output channel per input channel."""
    return unet_from_config(config, config.unet_inout_channels * (2 if config.adm_learn_sigma else 1))


@register_decoder("unet_direct", kind="direct", module_name="unet", output="linear")
class DirectUNet(UNetModel):
    """The diffusion decoder's UNet called once as a regressor: input an all-zero map at timestep 0, conditioned on
    the same tokens (and scene channels with concat_scene); its output is the heatmap. Same parameters and names as
    the denoiser, so the two decoders differ only in how they are trained and called."""

    @classmethod
    def from_config(cls, config, backbone: nn.Module) -> "DirectUNet":
        unet = unet_from_config(config, config.unet_inout_channels, cls)
        unet.heatmap_shape = (config.unet_inout_channels, config.output_size, config.output_size)
        return unet

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        context = features["conditioning"]
        x = context.new_zeros(context.shape[0], *self.heatmap_shape)
        output = super().forward(x, context.new_zeros(context.shape[0], dtype=torch.long), context,
                                 features.get("spatial"))
        return self.outputs(output)

    def outputs(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmap": output}


@register_decoder("unet_direct_sigmoid", kind="direct", module_name="unet", output="sigmoid")
class DirectSigmoidUNet(DirectUNet):
    """unet_direct with its output through a sigmoid: the heatmap as a per-cell probability (Gaze-LLE's head ends
    so), trained with direct_loss bce on the logits or mse on the map."""

    def outputs(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmap": torch.sigmoid(output), "heatmap_logits": output}
