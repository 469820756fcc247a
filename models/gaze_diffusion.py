"""GazeDiffusionModel: the gaze backbone (conditioning), the denoising UNet and the in/out head in one module.

The diffusion process only sees the UNet (`denoise`); conditioning is computed once per image with `encode` and
reused at every sampling step.
"""

import torch
from torch import nn


class GazeDiffusionModel(nn.Module):
    """Holds `gaze_backbone`, `unet` and `inout_head`; streams of the backbone can be frozen (see `freeze`)."""

    def __init__(self, gaze_backbone: nn.Module, unet: nn.Module, inout_head: nn.Module):
        super().__init__()
        self.gaze_backbone = gaze_backbone
        self.unet = unet
        self.inout_head = inout_head
        self.frozen_streams: list[str] = []

    def encode(self, image: torch.Tensor, head_mask: torch.Tensor, face: torch.Tensor) -> dict[str, torch.Tensor]:
        """image [B,3,S,S] ImageNet-normalised RGB, head_mask [B,1,S,S] binary, face [B,3,S,S] ->
        {"conditioning": [B, N, context_dim], "scene_face_feat": [B, C, h, w]}."""
        return self.gaze_backbone(image, head_mask, face)

    def inout_logit(self, scene_face_feat: torch.Tensor) -> torch.Tensor:
        """Logit [B] that the gaze target is inside the frame."""
        return self.inout_head(scene_face_feat)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """The UNet's prediction for noisy heatmaps x_t [B, C, H, W] at timesteps t [B]."""
        return self.unet(x_t, t, context=conditioning)

    def freeze(self, stream_name: str) -> None:
        """Stop training a backbone stream ("scene_backbone" or "face_backbone"): its parameters get no gradient and
        its BatchNorm layers keep their running statistics (eval mode) even while the model is in train mode."""
        stream = getattr(self.gaze_backbone, stream_name, None)
        if not isinstance(stream, nn.Module):
            raise ValueError(f"cannot freeze {stream_name!r}: the gaze backbone "
                             f"{type(self.gaze_backbone).__name__} has no such stream")
        stream.requires_grad_(False)
        if stream_name not in self.frozen_streams:
            self.frozen_streams.append(stream_name)
        self.train(self.training)

    def train(self, mode: bool = True) -> "GazeDiffusionModel":
        super().train(mode)
        for name in self.frozen_streams:
            for module in getattr(self.gaze_backbone, name).modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(UNet parameters, gaze backbone + in/out head parameters), trainable ones only: the optimizer's two
        groups."""
        unet = [p for p in self.unet.parameters() if p.requires_grad]
        rest = [p for module in (self.gaze_backbone, self.inout_head) for p in module.parameters() if p.requires_grad]
        return unet, rest
