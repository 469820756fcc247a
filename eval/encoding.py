"""The model's features of a batch (the conditioning, computed once per image and reused by every sampling step) and
its in/out probabilities: shared by the evaluation loop (eval/evaluate.py) and the figures (eval/figures.py)."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from datasets.transforms import network_inputs


@torch.no_grad()
def encode_batch(model, config, batch: dict, device: torch.device, autocast=nullcontext) -> tuple[dict, torch.Tensor]:
    """The model's features of a batch (computed once per image, reused by every sampling step) and its in/out
    probabilities [B]."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    image, head_mask, face = network_inputs(batch, device, memory_format)  # the loaders' uint8 samples become float
    depth = batch["depth"].to(device, memory_format=memory_format) if "depth" in batch else None  # depth_flag
    with autocast():
        features = model.encode(image, head_mask, face, depth)
        inout = torch.sigmoid(model.predict_inout_logit(features).float())
    return features, inout
