"""Exponential moving average (EMA) of a model's weights, used for evaluation when `ema_on` (rate `ema_rate`).

After every optimisation step: ema <- rate * ema + (1 - rate) * weights (guided-diffusion's `update_ema`).
What is averaged: every floating-point entry of the model's state dict, i.e. all parameters (frozen ones stay equal to
the model's, since the average of equal values is exact with `lerp`) and the floating-point buffers, i.e. the
BatchNorm running means and variances (an evaluation with averaged weights needs statistics that match them, as in
timm's ModelEmaV2). Constant floating buffers (the positional encodings' inverse frequencies) stay exactly constant.
Copied, not averaged: integer buffers (BatchNorm `num_batches_tracked`).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class ExponentialMovingAverage:
    """The averaged copy of `model.state_dict()`; `state_dict()` / `load_state_dict()` for checkpoints."""

    def __init__(self, model: nn.Module, rate: float):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must be in [0, 1), found {rate}")
        self.rate = rate
        self.averaged = {key: value.detach().clone() for key, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        floating = [key for key, value in self.averaged.items() if value.is_floating_point()]
        # One fused kernel per device and dtype instead of one launch per tensor (1,182 tensors at paper size).
        torch._foreach_lerp_([self.averaged[key] for key in floating], [current[key].detach() for key in floating],
                             1.0 - self.rate)
        for key, value in self.averaged.items():
            if not value.is_floating_point():
                value.copy_(current[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.averaged)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = set(self.averaged) - set(state), set(state) - set(self.averaged)
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
        for key, value in state.items():
            self.averaged[key].copy_(value)

    @contextmanager
    def swapped_in(self, model: nn.Module):
        """Run the body with the averaged weights loaded into `model`, then put the trained weights back."""
        trained = {key: value.detach().clone() for key, value in model.state_dict().items()}
        model.load_state_dict(self.averaged)
        try:
            yield model
        finally:
            model.load_state_dict(trained)
