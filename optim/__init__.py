"""The two-group optimizer (diffusion UNet; gaze backbone + in/out head) and its per-iteration learning-rate schedule.

Both groups follow one schedule (the original scheduled only one group, so the two silently ran at different rates);
their base rates differ only when `lr_gaze` is set.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

GROUP_NAMES = ("unet", "gaze")


def build_optimizer(unet_params, gaze_params, config) -> torch.optim.Optimizer:
    """AdamW with decoupled `weight_decay` (with `coupled_weight_decay`: Adam with the L2 term added to the
    gradient, as the original); group "unet" at `lr`, group "gaze" at `lr_gaze` (or `lr`). Fused (PyTorch's one-pass
    kernel over all parameters) when every parameter is on one GPU or all are on the CPU; PyTorch's default loop on
    other devices. On the CPU the fused step is 4.4x faster than the default per-tensor loop on the demo model
    (BENCHMARKS.md, "Training step")."""
    groups = [
        {"name": "unet", "params": list(unet_params), "lr": config.lr},
        {"name": "gaze", "params": list(gaze_params), "lr": config.lr if config.lr_gaze is None else config.lr_gaze},
    ]
    groups = [group for group in groups if group["params"]]  # a fully frozen group has nothing to optimise
    optimizer = torch.optim.Adam if config.coupled_weight_decay else torch.optim.AdamW
    # The fused kernel updates every parameter in a few launches (CUDA) or one pass (CPU) instead of several per tensor.
    device_types = {p.device.type for group in groups for p in group["params"]}
    fused = True if len(device_types) == 1 and device_types <= {"cuda", "cpu"} else None
    return optimizer(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def lr_factor_fn(config, total_steps: int) -> Callable[[int], float]:
    """The multiplier of every group's base rate at optimisation step `step` (0-based).

    - `lr_schedular`: linear warm-up over the first 10 % of the steps, then cosine to 0 at `total_steps`.
    - `warmup_linear`: the same warm-up, then constant.
    - `lr_anneal_steps` N > 0: guided-diffusion's linear decay 1 - step / N (training stops at N steps).
    - otherwise constant.
    """
    if config.lr_anneal_steps and (config.lr_schedular or config.warmup_linear):
        raise ValueError("lr_anneal_steps cannot be combined with lr_schedular or warmup_linear: choose one schedule")
    warmup_steps = max(1, round(0.1 * total_steps))

    def warmup(step: int) -> float:
        return (step + 1) / warmup_steps

    if config.lr_schedular:
        def factor(step: int) -> float:
            if step < warmup_steps:
                return warmup(step)
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    elif config.warmup_linear:
        def factor(step: int) -> float:
            return warmup(step) if step < warmup_steps else 1.0
    elif config.lr_anneal_steps:
        def factor(step: int) -> float:
            return max(0.0, 1.0 - step / config.lr_anneal_steps)
    else:
        def factor(step: int) -> float:
            return 1.0
    return factor


def build_lr_scheduler(optimizer: torch.optim.Optimizer, config, total_steps: int):
    """A LambdaLR applying the same factor to every group, stepped once per iteration."""
    factor = lr_factor_fn(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor] * len(optimizer.param_groups))


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{"lr_unet": ..., "lr_gaze": ...} for logging."""
    return {f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups}
