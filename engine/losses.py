"""Extra heatmap losses on the predicted x0 (`other_loss`), outside the diffusion core: the original's soft-argmax
location loss and KL term (`kl_div_loss`), and a cross-entropy location loss (`location_loss: cross_entropy`).

Both act on the denoised heatmap the network implies at the sampled step (`training_losses(...)["pred_xstart"]`),
so they apply to every prediction target (eps, x0, v). Positions are in output-grid cells, as in the original.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion.normalization import HeatmapScaling


def soft_argmax(heatmap: torch.Tensor, beta: float) -> torch.Tensor:
    """Differentiable argmax of heatmaps [B, H, W]: the softmax(beta * heatmap)-weighted mean cell, as (x, y) = (col,
    row) in grid cells [B, 2]. Large beta approaches the hard argmax."""
    batch, height, width = heatmap.shape
    # At least float32 (half-precision softmax of beta-scaled maps is too coarse); float64 stays float64.
    heatmap = heatmap.to(torch.promote_types(heatmap.dtype, torch.float32))
    weights = torch.softmax(beta * heatmap.reshape(batch, -1), dim=1).reshape(batch, height, width)
    cols = torch.arange(width, device=heatmap.device, dtype=weights.dtype)
    rows = torch.arange(height, device=heatmap.device, dtype=weights.dtype)
    return torch.stack([(weights.sum(1) * cols).sum(1), (weights.sum(2) * rows).sum(1)], dim=1)


def location_loss(pred_heatmap: torch.Tensor, gaze_point: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample squared distance [B], in grid cells, between the soft argmax of [B, H, W] and the gaze point
    (normalised (x, y) [B, 2], mapped to the cell `int(x * W)` convention's continuous position x * W)."""
    height, width = pred_heatmap.shape[1:]
    target = gaze_point.float() * torch.tensor([width, height], device=gaze_point.device, dtype=torch.float32)
    return ((soft_argmax(pred_heatmap, beta) - target) ** 2).sum(dim=1)


def heatmap_kl(pred_heatmap: torch.Tensor, target_heatmap: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(pred || target) [B] between the heatmaps [B, H, W] softmaxed over their cells (the original's
    `KLDivLoss(log_softmax(target), softmax(pred))`, summed over cells)."""
    batch = pred_heatmap.shape[0]
    log_pred = F.log_softmax(pred_heatmap.float().reshape(batch, -1), dim=1)
    log_target = F.log_softmax(target_heatmap.float().reshape(batch, -1), dim=1)
    return (log_pred.exp() * (log_pred - log_target)).sum(dim=1)


def heatmap_cross_entropy(pred_heatmap: torch.Tensor, target_heatmap: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample cross-entropy [B] between the target heatmaps [B, H, W] (non-negative, normalised here to a
    distribution over cells) and softmax(beta * pred_heatmap) over cells. Unlike the soft-argmax distance, whose
    optimum under doubt is the centroid between candidate targets, it rewards mass on the right target."""
    batch = pred_heatmap.shape[0]
    target = target_heatmap.float().reshape(batch, -1)
    target = target / target.sum(dim=1, keepdim=True).clamp_min(torch.finfo(target.dtype).tiny)
    return -(target * F.log_softmax(beta * pred_heatmap.float().reshape(batch, -1), dim=1)).sum(dim=1)


def extra_heatmap_loss(pred_x0: torch.Tensor, x_start: torch.Tensor, gaze_point: torch.Tensor, config) -> torch.Tensor:
    """The `other_loss` term for in-frame samples, mean over samples, on x0 in diffusion space [-v, v] ([B, H, W]):
    with `kl_div_loss` kl_weight * KL(pred || gt); else location_weight * the `location_loss`: the soft-argmax
    distance to the gaze point, or the cross-entropy against the target heatmap (mapped back to [0, 1])."""
    if config.kl_div_loss:
        return config.kl_weight * heatmap_kl(pred_x0, x_start).mean()
    if config.location_loss == "cross_entropy":
        target = HeatmapScaling(config.diff_normalization).to_heatmap(x_start)
        return config.location_weight * heatmap_cross_entropy(pred_x0, target, config.softargmax_beta).mean()
    return config.location_weight * location_loss(pred_x0, gaze_point, config.softargmax_beta).mean()
