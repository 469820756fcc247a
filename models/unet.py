"""The denoising network: openai/guided-diffusion's (ADM) UNet with LDM SpatialTransformer cross-attention blocks.

Module names follow ADM (`time_embed`, `input_blocks`, `middle_block`, `output_blocks`, `out`, ResBlock
`in_layers/emb_layers/out_layers/skip_connection`) so the original DiffusionGaze `model.*` weights map 1:1 onto it.
"""

import math
from typing import Sequence

import torch
from torch import nn

from models.attention import NORM_GROUPS, SpatialTransformer


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """ADM's sinusoidal embedding [B, dim] of (possibly fractional) timesteps [B]: cos half, then sin half."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class Downsample(nn.Module):
    """Halve the resolution: a 3x3 stride-2 conv (conv_resample) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution by nearest-neighbour interpolation, then a 3x3 conv if conv_resample."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class ResBlock(nn.Module):
    """ADM residual block conditioned on the timestep embedding, optionally resampling (resblock_updown).

    With use_scale_shift_norm the embedding gives a scale and shift applied after the second GroupNorm
    (h = norm(h) * (1 + scale) + shift, FiLM); otherwise it is added before it.
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            nn.GroupNorm(NORM_GROUPS, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            nn.GroupNorm(NORM_GROUPS, out_channels), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        # Zero-initialised last conv: each block starts as its skip connection (ADM).
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            # Resample between the norm/activation and the conv, on both branches (ADM).
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class UNetStage(nn.Sequential):
    """One entry of input_blocks / middle_block / output_blocks: routes the timestep embedding to ResBlocks and
    the context to SpatialTransformers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """ADM UNet with cross-attention to a conditioning sequence.

    Args (DiffusionGaze option in brackets):
        in_channels / out_channels: channels of x_t and of the prediction (x2 for a learned variance)
            [unet_inout_channels, adm_learn_sigma].
        model_channels: width of the first level; the time embedding is 4x this [unet_inplanes].
        num_res_blocks: ResBlocks per level [unet_residual].
        attention_resolutions: downsample factors (1, 2, 4, ...) whose ResBlocks are followed by a
            SpatialTransformer [list_unet_attention_levels]; the middle block always has one.
        channel_mult: width multiple per level [list_unet_inplanes_multipliers].
        num_heads: attention heads, head width = channels // heads [unet_spatial_tf_heads].
        transformer_depth: transformer blocks per SpatialTransformer [unet_spatial_tf_layers].
        context_dim: width of the conditioning tokens [unet_context_vector].
        dropout: dropout inside ResBlocks [unet_dropout].
        conv_resample, use_scale_shift_norm, resblock_updown: as in ADM.
        spatial_channels: channels of an optional spatial condition concatenated to x_t (same H, W) [concat_scene].
    """

    def __init__(self, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_resolutions: Sequence[int], channel_mult: Sequence[int], num_heads: int,
                 transformer_depth: int, context_dim: int, dropout: float = 0.0, conv_resample: bool = True,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False, spatial_channels: int = 0):
        super().__init__()
        _check_arguments(model_channels, channel_mult, attention_resolutions, num_res_blocks, transformer_depth)
        self.model_channels = model_channels
        self.spatial_channels = spatial_channels
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res_block(channels, out_ch=None, up=False, down=False):
            return ResBlock(channels, emb_dim, dropout, out_ch, use_scale_shift_norm, up=up, down=down)

        def attention(channels):
            return SpatialTransformer(channels, num_heads, transformer_depth, context_dim)

        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([UNetStage(nn.Conv2d(in_channels + spatial_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        factor = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res_block(ch, model_channels * mult)]
                ch = model_channels * mult
                if factor in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(UNetStage(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res_block(ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
                self.input_blocks.append(UNetStage(down))
                skip_channels.append(ch)
                factor *= 2

        self.middle_block = UNetStage(res_block(ch), attention(ch), res_block(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for index in range(num_res_blocks + 1):
                layers = [res_block(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if factor in attention_resolutions:
                    layers.append(attention(ch))
                if level and index == num_res_blocks:
                    layers.append(res_block(ch, up=True) if resblock_updown else Upsample(ch, conv_resample))
                    factor //= 2
                self.output_blocks.append(UNetStage(*layers))

        self.out = nn.Sequential(nn.GroupNorm(NORM_GROUPS, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                spatial: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C_in, H, W] (H, W divisible by downsample_factor), timesteps [B] (int or float),
        context [B, N, context_dim], spatial [B, spatial_channels, H, W] when built with spatial_channels
        -> [B, C_out, H, W]."""
        if (spatial is None) != (self.spatial_channels == 0):
            raise ValueError(f"this UNet takes {self.spatial_channels} spatial condition channels; got "
                             f"{'none' if spatial is None else spatial.shape[1]}")
        # The embedding is computed in float32 (as in ADM) and given to time_embed in its own dtype (float64 runs).
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))
        skips = []
        h = x if spatial is None else torch.cat([x, spatial.to(x.dtype)], dim=1)
        for stage in self.input_blocks:
            h = stage(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)


def _check_arguments(model_channels, channel_mult, attention_resolutions, num_res_blocks, transformer_depth):
    if not channel_mult:
        raise ValueError("UNet channel_mult (list_unet_inplanes_multipliers) must name at least one level")
    if num_res_blocks < 1 or transformer_depth < 1:
        raise ValueError(
            f"UNet needs num_res_blocks (unet_residual) >= 1 and transformer_depth (unet_spatial_tf_layers) >= 1, "
            f"got {num_res_blocks} and {transformer_depth}"
        )
    widths = [model_channels * mult for mult in channel_mult]
    if any(width % NORM_GROUPS for width in widths):
        raise ValueError(
            f"UNet level widths unet_inplanes x list_unet_inplanes_multipliers = {widths} must all be divisible by "
            f"{NORM_GROUPS} (GroupNorm groups)"
        )
    factors = [2 ** level for level in range(len(channel_mult))]
    unreachable = [f for f in attention_resolutions if f not in factors]
    if unreachable:
        raise ValueError(
            f"UNet attention_resolutions (list_unet_attention_levels) {list(attention_resolutions)} contains "
            f"downsample factors {unreachable} that this {len(channel_mult)}-level UNet never reaches "
            f"(its factors are {factors})"
        )
