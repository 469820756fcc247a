"""The backward pass and optimiser update shared by the training loops: loss scaling for fp16, gradient clipping on
unscaled gradients, and whether the step was taken (GradScaler skips steps with inf/NaN fp16 gradients)."""
from __future__ import annotations

import torch


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   grad_clip: float = 0.0) -> bool:
    """zero_grad, backward (scaled), clip the global norm to `grad_clip` (0 = off), step, update the scale.

    Returns False when the scaler skipped the step (its scale went down), so callers can hold their schedule.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    return scale is None or scaler.get_scale() >= scale
