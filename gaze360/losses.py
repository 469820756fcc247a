"""Losses of the Gaze360 models: pinball (quantile) loss around output -/+ sigma, the regularised sin-cos loss, MSE.

Targets are (yaw, pitch) radians or (sin yaw, cos yaw, sin pitch), matching the model's `target` option.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pinball_loss(output: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, quantile: float = 0.1,
                 epsilon: float = 0.0) -> torch.Tensor:
    """Gaze360's quantile loss: output - sigma is the `quantile` and output + sigma the 1 - `quantile` quantile of
    the target; rho_q(r) = max(q r, (q - 1) r) with r = target - bound; mean over batch and outputs.
    sigma [B, 1] broadcasts over the outputs [B, K]. epsilon > 0: the epsilon-insensitive pinball loss, residuals
    shrunk towards 0 by epsilon (|r| <= epsilon costs nothing)."""
    def rho(q: float, residual: torch.Tensor) -> torch.Tensor:
        if epsilon:
            residual = torch.sign(residual) * (residual.abs() - epsilon).clamp(min=0.0)
        return torch.maximum(q * residual, (q - 1.0) * residual)

    return (rho(quantile, target - (output - sigma)) + rho(1.0 - quantile, target - (output + sigma))).mean()


def sincos_pinball_loss(output: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, quantile: float = 0.1,
                        norm_weight: float = 0.1, epsilon: float = 0.0) -> torch.Tensor:
    """(1 - w) pinball + w MSE(||(sin yaw, cos yaw)||, 1): keeps the predicted yaw pair on the unit circle."""
    norm = torch.linalg.vector_norm(output[:, :2], dim=1)
    return (1.0 - norm_weight) * pinball_loss(output, sigma, target, quantile, epsilon) + norm_weight * F.mse_loss(
        norm, torch.ones_like(norm))


def gaze_loss(prediction: dict[str, torch.Tensor], target: torch.Tensor, config) -> torch.Tensor:
    """The configured loss (`loss`, `pinball_quantile`, `sincos_norm_weight`) in float32."""
    output, sigma, target = prediction["output"].float(), prediction["sigma"].float(), target.float()
    if config.loss == "pinball":
        return pinball_loss(output, sigma, target, config.pinball_quantile, config.pinball_epsilon)
    if config.loss == "sincos_pinball":
        return sincos_pinball_loss(output, sigma, target, config.pinball_quantile, config.sincos_norm_weight,
                                   config.pinball_epsilon)
    return F.mse_loss(output, target)
