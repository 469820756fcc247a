"""GazeDiffusionModel: the gaze backbone (conditioning), the heatmap decoder (the denoising UNet, or a direct decoder,
models/decoders.py) and the in/out head in one module.

The diffusion process only sees the UNet (`denoise`); conditioning is computed once per image with `encode` and
reused at every sampling step. A direct decoder maps `encode`'s features to the heatmap in one pass (`decode`).
"""

import torch
import torch.nn.functional as F
from torch import nn

SCENE_CHANNELS = 4  # RGB + head mask, the spatial condition of `concat_scene`


class GazeDiffusionModel(nn.Module):
    """Holds `gaze_backbone`, the heatmap network (`unet` for the built-in decoders; `heatmap_network` whatever its
    name) and `inout_head` (None when the decoder has its own in/out head); streams of the backbone can be frozen
    (see `freeze`)."""

    def __init__(self, gaze_backbone: nn.Module, heatmap_network: nn.Module, inout_head: nn.Module | None,
                 spatial_size: int | None = None, network_name: str = "unet", decoder_kind: str = "diffusion"):
        super().__init__()
        self.decoder_kind = decoder_kind  # "diffusion" (sampled) or "direct" (one forward pass), models/decoders.py
        self.spatial_size = spatial_size  # heatmap side when the UNet also takes the scene (concat_scene)
        self.gaze_backbone = gaze_backbone
        self.network_name = network_name
        setattr(self, network_name, heatmap_network)  # registered in this order: state-dict keys `unet.*` as before
        self.inout_head = inout_head
        self.frozen_streams: list[str] = []

    @property
    def generative(self) -> bool:
        """Whether the heatmap is sampled (a diffusion decoder: the number of samples K and of steps apply) rather
        than predicted in one forward pass."""
        return self.decoder_kind == "diffusion"

    @property
    def heatmap_network(self) -> nn.Module:
        """The heatmap decoder's network: the denoiser a diffusion formulation calls, or a direct decoder."""
        return getattr(self, self.network_name)

    def encode(self, image: torch.Tensor, head_mask: torch.Tensor, face: torch.Tensor,
               depth: torch.Tensor | None = None, scene_tokens=None) -> dict[str, torch.Tensor]:
        """image [B,3,S,S] ImageNet-normalised RGB, head_mask [B,1,S,S] binary, face [B,3,S,S], depth [B,3,S,S]
        (colour-mapped, only for a backbone with a depth stream) ->
        {"conditioning": [B, N, context_dim], "scene_face_feat": [B, C, h, w]}, plus "spatial" [B, 4, H, W] (image
        and head mask area-resized to the heatmap grid) when the UNet takes the scene as extra channels.
        `scene_tokens`: the frozen scene encoder's output for these images, read from the feature cache
        (models/feature_cache.py), passed to a backbone that accepts it instead of running that encoder."""
        extra = {} if scene_tokens is None else {"scene_tokens": scene_tokens}
        features = dict(self.gaze_backbone(image, head_mask, face, **extra) if depth is None
                        else self.gaze_backbone(image, head_mask, face, depth, **extra))
        if self.spatial_size is not None:
            # A person_independent_scene backbone may get one image for a batch of people: expand it.
            scene = torch.cat([image.expand(head_mask.shape[0], -1, -1, -1), head_mask.to(image.dtype)], dim=1)
            features["spatial"] = F.interpolate(scene, size=(self.spatial_size,) * 2, mode="area")
        return features

    @staticmethod
    def denoiser_kwargs(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the diffusion process passes to the UNet at every step (`model(x_t, t, **kwargs)`)."""
        kwargs = {"context": features["conditioning"]}
        if "spatial" in features:
            kwargs["spatial"] = features["spatial"]
        return kwargs

    def inout_logit(self, scene_face_feat: torch.Tensor) -> torch.Tensor:
        """Logit [B] of the in/out head that the gaze target is inside the frame."""
        if self.inout_head is None:
            raise ValueError("this model's heatmap decoder has its own in/out head: use predict_inout_logit(features)")
        return self.inout_head(scene_face_feat)

    def predict_inout_logit(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logit [B] that the gaze target is inside the frame, from `encode`'s features: the in/out head's, or the
        direct decoder's own (then its output is kept in features["decoded"] for the heatmap)."""
        if self.inout_head is not None:
            return self.inout_head(features["scene_face_feat"])
        return self.decode(features)["inout_logit"]

    def decode(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A direct decoder's output for `encode`'s features, computed once per features dict."""
        if "decoded" not in features:
            features["decoded"] = self.heatmap_network(features)
        return features["decoded"]

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The UNet's prediction for noisy heatmaps x_t [B, C, H, W] at timesteps t [B], given `encode`'s output."""
        return self.unet(x_t, t, **self.denoiser_kwargs(features))

    def freeze(self, stream_name: str) -> None:
        """Stop training a backbone stream ("scene_backbone" or "face_backbone"): its parameters get no gradient and
        it stays in eval mode (BatchNorm running statistics kept, dropout and stochastic depth off) even while the
        model is in train mode, so a frozen stream computes the same function every step."""
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
            getattr(self.gaze_backbone, name).eval()
        return self

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(heatmap network parameters, gaze backbone + in/out head parameters), trainable ones only: the optimizer's
        two groups."""
        network = [p for p in self.heatmap_network.parameters() if p.requires_grad]
        rest = [p for module in (self.gaze_backbone, self.inout_head) if module is not None
                for p in module.parameters() if p.requires_grad]
        return network, rest
