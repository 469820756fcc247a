"""One denoising step of the original final UNet configuration, ours against diffusers' UNet2DConditionModel built with
the same topology, timed side by side in one run (interleaved repeats; the ratio is the figure, absolute times are
machine-bound). Run `python -m bench.bench_unet [--batch 16 --repeats 20]` from the project root."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.config import load_config
from models.build import count_parameters
from models.unet import UNetModel

TOKENS = 98  # 49 scene + 49 face tokens of the paper's gaze backbone


def our_unet(config) -> UNetModel:
    return UNetModel(
        in_channels=config.unet_inout_channels, model_channels=config.unet_inplanes,
        out_channels=config.unet_inout_channels, num_res_blocks=config.unet_residual,
        attention_resolutions=list(config.list_unet_attention_levels),
        channel_mult=list(config.list_unet_inplanes_multipliers), num_heads=config.unet_spatial_tf_heads,
        transformer_depth=config.unet_spatial_tf_layers, context_dim=config.unet_context_vector,
        dropout=0.0, conv_resample=config.conv_resample, use_scale_shift_norm=config.use_scale_shift_norm,
        resblock_updown=config.resblock_updown)


def diffusers_unet(config):
    """UNet2DConditionModel with our levels, widths, residual blocks, attention levels (cross-attention
    transformer blocks after each residual block at those downsample factors, and in the middle), heads, context
    width, GroupNorm(8) and scale-shift time conditioning."""
    from diffusers import UNet2DConditionModel

    levels = len(config.list_unet_inplanes_multipliers)
    attention = [2 ** level in config.list_unet_attention_levels for level in range(levels)]
    return UNet2DConditionModel(
        sample_size=config.output_size, in_channels=config.unet_inout_channels,
        out_channels=config.unet_inout_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        block_out_channels=tuple(config.unet_inplanes * m for m in config.list_unet_inplanes_multipliers),
        layers_per_block=config.unet_residual, norm_num_groups=8, cross_attention_dim=config.unet_context_vector,
        attention_head_dim=config.unet_spatial_tf_heads,  # diffusers' legacy name: the number of heads
        transformer_layers_per_block=config.unet_spatial_tf_layers, resnet_time_scale_shift="scale_shift",
        mid_block_type="UNetMidBlock2DCrossAttn", flip_sin_to_cos=True, freq_shift=0)


def main(batch: int = 16, repeats: int = 20, threads: int = 1) -> None:
    # One thread by default: on a shared machine, intra-op threads that wait for busy cores distort the comparison.
    torch.set_num_threads(threads)
    config = load_config(["configs/diffusion.yaml", "configs/gaze.yaml"], {"device": "cpu"})
    ours, theirs = our_unet(config).eval(), diffusers_unet(config).eval()
    size = config.output_size
    x = torch.randn(batch, 1, size, size)
    t = torch.randint(0, 1000, (batch,))
    context = torch.randn(batch, TOKENS, config.unet_context_vector)
    calls = {"ours (models.unet.UNetModel)": lambda: ours(x, t, context=context),
             "diffusers UNet2DConditionModel": lambda: theirs(x, t, encoder_hidden_states=context).sample}
    timings = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():  # warm-up
            call()
        for _ in range(repeats):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - started)
    print(f"UNet step, original final configuration: {size}x{size} heatmap, batch {batch}, {TOKENS} context tokens "
          f"of width {config.unet_context_vector}, CPU, {torch.get_num_threads()} threads, {repeats} interleaved "
          f"repeats (median)")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for (name, module) in zip(calls, (ours, theirs)):
        print(f"  {name:<32} {count_parameters(module):>9,} parameters  {medians[name] * 1e3:8.2f} ms per step")
    ours_s, theirs_s = medians.values()
    print(f"  ratio diffusers / ours: {theirs_s / ours_s:.2f} (> 1: ours is faster)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(args.batch, args.repeats, args.threads)
