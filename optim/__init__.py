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
    """The multiplier of every group's base rate at optimisation step `step` (0-based), for `lr_schedule`:

    - warmup_cosine: linear warm-up over the first 10 % of the steps, then cosine to 0 at `total_steps`.
    - warmup_constant: the same warm-up, then constant.
    - linear_anneal: guided-diffusion's linear decay 1 - step / lr_anneal_steps (training stops at that step).
    - constant.
    """
    schedule = config.lr_schedule
    if schedule == "linear_anneal" and not config.lr_anneal_steps > 0:
        raise ValueError(f"lr_schedule linear_anneal needs lr_anneal_steps > 0, found {config.lr_anneal_steps}")
    warmup_steps = max(1, round(0.1 * total_steps))

    def warmup(step: int) -> float:
        return (step + 1) / warmup_steps

    if schedule == "warmup_cosine":
        def factor(step: int) -> float:
            if step < warmup_steps:
                return warmup(step)
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    elif schedule == "warmup_constant":
        def factor(step: int) -> float:
            return warmup(step) if step < warmup_steps else 1.0
    elif schedule == "linear_anneal":
        def factor(step: int) -> float:
            return max(0.0, 1.0 - step / config.lr_anneal_steps)
    elif schedule == "constant":
        def factor(step: int) -> float:
            return 1.0
    else:
        raise ValueError(f"lr_schedule: expected constant, warmup_cosine, warmup_constant or linear_anneal, found "
                         f"{schedule!r}")
    return factor


def build_lr_scheduler(optimizer: torch.optim.Optimizer, config, total_steps: int):
    """A LambdaLR applying the same factor to every group, stepped once per iteration."""
    factor = lr_factor_fn(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor] * len(optimizer.param_groups))


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{"lr_unet": ..., "lr_gaze": ...} for logging."""
    return {f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups}
