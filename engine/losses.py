"""The training objective: how the diffusion loss, the in/out BCE and the extra heatmap term (`extra_loss`) make the
total loss, which rows each term sees and with which weight (docs/losses.md has the table and the reasons).

engine.train.compute_losses runs the formulation on the rows `denoises_out_of_frame_rows` asks for and hands its
terms to `training_objective`, the one place the total is composed:

    loss = diffusion_weight * diffusion + inout_weight * BCE (x_loss) + the weighted extra term (extra_loss)

This project's own terms (`location`, `cross_entropy`, `kl`) see the in-frame rows (the others have no target) and
compare in consistent units; `location_original` and `kl_original` are the DiffusionGaze code's terms as its
`train_one_epoch` computed them (every row, its units and PyTorch's default reductions), which a DiffusionGaze
configuration gets from its switches (engine.original_layout). Positions are in output-grid cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.options import ORIGINAL_EXTRA_LOSSES


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
    """Per-sample KL(pred || target) [B] between the heatmaps [B, H, W] softmaxed over their cells, summed over
    cells (`extra_loss: kl` on the [0, 1] maps)."""
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


def location_loss_original(output: torch.Tensor, gaze_point: torch.Tensor, beta: float) -> torch.Tensor:
    """The original's location term (scalar): MSELoss between the soft argmax of the network's raw output [B, H, W]
    as (row, column) cells on the (size - 1) scale and the gaze point (y, x) in [0, 1], mean over rows and both
    coordinates. Its units do not match (a known defect): the term pulls the location towards the top-left cell."""
    location = soft_argmax(output, beta)  # (column, row): the same pairing as (row, column) against (y, x)
    return ((location - gaze_point.to(location.dtype)) ** 2).mean()


def heatmap_kl_original(output: torch.Tensor, target_heatmap: torch.Tensor, scale: float) -> torch.Tensor:
    """The original's KL term (scalar): KLDivLoss(reduction "batchmean")(log_softmax(target), softmax((output + s)
    / 2s)) over the cells of [B, H, W], with s the scale its code un-normalised the network output by."""
    batch = output.shape[0]
    dtype = torch.promote_types(output.dtype, torch.float32)  # a small KL of near-uniform maps: no float16
    mapped = (output.to(dtype).reshape(batch, -1) + scale) / (2 * scale)
    return F.kl_div(F.log_softmax(target_heatmap.to(dtype).reshape(batch, -1), dim=1), F.softmax(mapped, dim=1),
                    reduction="batchmean")


@dataclass
class DenoisedRows:
    """The formulation's training terms on the R rows of the batch the network denoised."""

    loss: torch.Tensor  # [R] per-row diffusion loss
    pred_x0: torch.Tensor  # [R, H, W] the x0 heatmap the network implies, in the formulation's heatmap space
    model_output: torch.Tensor  # [R, H, W] the network's raw output
    in_frame: torch.Tensor  # [R] bool, on the CPU (selecting rows by it never waits for the device)
    target: torch.Tensor  # [R, H, W] the target heatmap in [0, 1] (zeros out of frame)
    gaze_point: torch.Tensor  # [R, 2] normalised (x, y); -1 out of frame
    pred_heatmap: torch.Tensor  # [R, H, W] pred_x0 in heatmap units (formulation.unit_heatmap)
    output_scale: float  # the formulation's original_output_scale: the original mapped outputs by (out + v) / 2v

    def inside(self, tensor: torch.Tensor) -> torch.Tensor:
        """The in-frame rows of a [R, ...] tensor."""
        if bool(self.in_frame.all()):
            return tensor
        return tensor[torch.nonzero(self.in_frame).flatten().to(tensor.device, non_blocking=True)]


def denoises_out_of_frame_rows(config) -> bool:
    """Whether a term needs the network's output on the out-of-frame rows too (else only in-frame rows are
    denoised: they alone have a target)."""
    return config.extra_loss in ORIGINAL_EXTRA_LOSSES or config.out_of_frame_diffusion_loss


def extra_term(rows: DenoisedRows, config) -> torch.Tensor:
    """The weighted `extra_loss` term (scalar)."""
    name = config.extra_loss
    if name == "location_original":
        return config.location_weight * location_loss_original(rows.model_output, rows.gaze_point,
                                                               config.softargmax_beta)
    if name == "kl_original":
        return config.kl_weight * heatmap_kl_original(rows.model_output, rows.target, rows.output_scale)
    pred, target, gaze = rows.inside(rows.pred_x0), rows.inside(rows.target), rows.inside(rows.gaze_point)
    if name == "kl":
        return config.kl_weight * heatmap_kl(rows.inside(rows.pred_heatmap), target).mean()
    if name == "cross_entropy":
        return config.location_weight * heatmap_cross_entropy(pred, target, config.softargmax_beta).mean()
    if name == "location":
        return config.location_weight * location_loss(pred, gaze, config.softargmax_beta).mean()
    raise ValueError(f"extra_loss {name!r}: expected one of none, location, cross_entropy, kl, location_original, "
                     "kl_original")


def training_objective(rows: DenoisedRows | None, inout_logit: torch.Tensor, inout: torch.Tensor, config, *,
                       in_frame_total: torch.Tensor, world_size: int = 1, loss_weight: float | None = None,
                       loss_name: str = "loss_diffusion") -> dict[str, torch.Tensor]:
    """The total loss of one batch and its terms: "loss", `loss_name` (the heatmap term, unweighted), "loss_inout"
    (the BCE, unweighted, every row), "loss_extra" (weighted). The heatmap term's weight is `loss_weight`
    (default diffusion_weight).

    The diffusion term is the sum of the in-frame rows' diffusion loss (with out_of_frame_diffusion_loss, every
    denoised row's) divided by the in-frame rows of the global batch (`in_frame_total`, all ranks together) over
    `world_size`, so that DDP's gradient average equals the gradient of the single-process loss; 0 when no row is
    in frame. `rows` is None when no row was denoised."""
    device = inout_logit.device
    diffusion_loss = extra_loss = torch.zeros((), device=device)
    if rows is not None:
        summed = (rows.loss if config.out_of_frame_diffusion_loss else rows.inside(rows.loss)).float().sum()
        diffusion_loss = torch.where(in_frame_total > 0, summed * (world_size / in_frame_total.clamp_min(1)),
                                     torch.zeros((), device=device))
        if config.extra_loss != "none":
            extra_loss = extra_term(rows, config)
    inout_loss = F.binary_cross_entropy_with_logits(inout_logit.float(), inout)
    loss = (config.diffusion_weight if loss_weight is None else loss_weight) * diffusion_loss
    if config.x_loss:
        loss = loss + config.inout_weight * inout_loss
    if config.extra_loss != "none":
        loss = loss + extra_loss
    return {"loss": loss, loss_name: diffusion_loss, "loss_inout": inout_loss, "loss_extra": extra_loss}
