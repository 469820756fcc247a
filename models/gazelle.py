"""Gaze-LLE (Ryan et al., CVPR 2025; github.com/fkryan/gazelle) as two parts: a gaze backbone and a direct decoder.

- `GazeLLEBackbone` (registered gaze backbone "gazelle"): a frozen DINOv2 encoder (models/dinov2.py) -> 1x1
  projection to `dim` (256) -> Gaze-LLE's 2-D sinusoidal positions -> its learned head token added on the token-grid
  cells of the head box. Everything before the head token depends on the image only (`scene_features`), so a frame
  is encoded once for all its people (`person_independent_scene`).
- `GazeLLEDecoder`: the optional in/out token in front of the tokens -> 3 transformer blocks (timm's `Block`, as
  Gaze-LLE) -> transposed-conv heatmap head with a sigmoid (64 x 64 at 448 px) and the in/out head on the in/out
  token (a logit; Gaze-LLE's score is its sigmoid); it takes and returns what the framework's direct heatmap
  decoders do (models/decoders.py on main).
- `GazeLLE`: both, called like Gaze-LLE's model on several images with their people.

The head map is the token grid with 1 on the cells of the person's head box (datasets.peer_transforms: boxes
normalised to the image, edges rounded on the grid as Gaze-LLE does). Building from the released files:
pretrained/peer_files.py; the images and head maps from a frame: datasets/peer_transforms.py.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from models.backbones import register_backbone, to_tokens
from models.dinov2 import DinoV2Encoder

DIM = 256  # Gaze-LLE's token width
INPUT_SIZE = 448


def positional_encoding(dim: int, height: int, width: int) -> torch.Tensor:
    """Gaze-LLE's 2-D sinusoidal positions [dim, height, width]: channels 2i and 2i + 1 of the first half are sin and
    cos of column * f_i, those of the second half sin and cos of row * f_i, with f_i = 10000^(-2i / (dim / 2))."""
    if dim % 4:
        raise ValueError(f"the 2-D sinusoidal positions need a width divisible by 4, got {dim}")
    half = dim // 2
    frequencies = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))  # [dim / 4]
    columns = torch.arange(0.0, width)[:, None] * frequencies  # [width, dim / 4]
    rows = torch.arange(0.0, height)[:, None] * frequencies
    encoding = torch.zeros(dim, height, width)
    encoding[0:half:2] = columns.sin().T[:, None, :].expand(-1, height, -1)
    encoding[1:half:2] = columns.cos().T[:, None, :].expand(-1, height, -1)
    encoding[half::2] = rows.sin().T[:, :, None].expand(-1, -1, width)
    encoding[half + 1::2] = rows.cos().T[:, :, None].expand(-1, -1, width)
    return encoding


@register_backbone("gazelle")
class GazeLLEBackbone(nn.Module):
    """forward(image, head_mask) -> {"conditioning": [N, side^2, dim] tokens (cells in row-major order),
    "scene_face_feat": the same as a map [N, dim, side, side]}.

    `head_mask` is the head map on the token grid, [N, side, side] or [N, 1, side, side]
    (datasets.peer_transforms.gazelle_head_maps), or this project's pixel head mask [N, 1, S, S] (see `_grid_map`:
    what the training and evaluation loops pass today). `image` is [N, 3, S, S], or [1, 3, S, S] for all N people of one
    frame (`person_independent_scene`); the face crop is not used (Gaze-LLE has no face stream). Parameter names
    (pretrained/peer_files.py maps Gaze-LLE's onto them): `scene_backbone` (DINOv2), `scene_projection` (Gaze-LLE's
    `linear`), `pos_embed` (a buffer, kept in the state dict as Gaze-LLE keeps it), `head_token`.
    """

    person_independent_scene = True

    def __init__(self, architecture: str = "vitb14", input_size: int = INPUT_SIZE, dim: int = DIM,
                 encoder: DinoV2Encoder | None = None):
        super().__init__()
        self.scene_backbone = encoder if encoder is not None else DinoV2Encoder(architecture, input_size)
        side = self.scene_backbone.side
        self.scene_projection = nn.Conv2d(self.scene_backbone.channels, dim, kernel_size=1)
        self.head_token = nn.Embedding(1, dim)
        self.register_buffer("pos_embed", positional_encoding(dim, side, side))
        self.context_dim, self.feature_channels, self.feature_side = dim, dim, side
        self.num_tokens = side * side

    @classmethod
    def from_config(cls, config):
        """The options it reads: `input_size`, `unet_context_vector` (the token width, Gaze-LLE's 256) and
        `timm_model`, which names the DINOv2 architecture (`dinov2_vitb14` or timm's `vit_base_patch14_dinov2`;
        ViT-S/B/L); `backbone_weights` (a DINOv2 file in the hub's or timm's layout) fills the encoder. The other
        timm backbone options have no meaning here and are refused unless at their defaults."""
        from pretrained.peer_files import dinov2_architecture_name, load_dinov2_encoder

        refused = [text for bad, text in (
            (getattr(config, "backbone_pretrained", False), "backbone_pretrained (timm's download; give the DINOv2 "
                                                            "file as backbone_weights)"),
            (getattr(config, "face_stream", False), "face_stream (Gaze-LLE has no face stream)"),
            (getattr(config, "head_position", "prompt") != "prompt", "head_position other than prompt (Gaze-LLE's "
                                                                     "head token is its prompt)"),
            (getattr(config, "timm_prefix_tokens", "drop") != "drop", "timm_prefix_tokens keep (Gaze-LLE drops the "
                                                                      "class token)"),
            (getattr(config, "depth_flag", False), "depth_flag"),
            (getattr(config, "adm_attention_module", False), "adm_attention_module"),
        ) if bad]
        if refused:
            raise ValueError("gaze_backbone gazelle does not take " + "; ".join(refused))
        if not getattr(config, "timm_model", None):
            raise ValueError("gaze_backbone gazelle: set timm_model to its DINOv2 encoder (dinov2_vitb14, "
                             "dinov2_vitl14 or timm's vit_base_patch14_dinov2, ...)")
        architecture = dinov2_architecture_name(config.timm_model)
        backbone = cls(architecture, config.input_size, config.unet_context_vector)
        if getattr(config, "backbone_weights", None):
            load_dinov2_encoder(backbone.scene_backbone, config.backbone_weights)
        return backbone

    def encode_scene(self, image: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The DINOv2 features of RGB images [B, channels, side, side] (contiguous): what the feature cache stores."""
        return self.scene_backbone(image).contiguous(), None

    def scene_features(self, image: torch.Tensor | None = None, scene_tokens=None) -> torch.Tensor:
        """Projected features + positions [B, dim, side, side] of images [B, 3, S, S], or of `scene_tokens`
        ((map, None) as `encode_scene` returns it, e.g. from the feature cache): the part of the conditioning that
        does not depend on the person."""
        scene_map = self.scene_backbone(image) if scene_tokens is None else scene_tokens[0]
        projected = self.scene_projection(scene_map.to(self.scene_projection.weight.dtype))
        return projected + self.pos_embed.to(projected.dtype)

    def prompt(self, scene: torch.Tensor, head_map: torch.Tensor) -> torch.Tensor:
        """`scene_features` of each person's image [N, dim, side, side] (or [1, ...] for all) plus the head token on
        the head map's cells [N, side, side] -> [N, dim, side, side]."""
        head_map = self._grid_map(head_map).to(scene.dtype)
        if scene.shape[0] not in (1, head_map.shape[0]):
            raise ValueError(f"gazelle backbone: {scene.shape[0]} images for {head_map.shape[0]} head maps; give one "
                             "image per person, or one image for all")
        return scene + head_map[:, None] * self.head_token.weight.to(scene.dtype)[:, :, None, None]

    def _grid_map(self, head_map: torch.Tensor) -> torch.Tensor:
        """The head map on the token grid: as given, or, for this project's pixel head mask at the input size (the
        datasets' `head_mask`, 1 on every pixel the box overlaps), its value at each cell's centre pixel. That
        marks the cells Gaze-LLE's rounding marks except where a box's left or top edge lies less than one input
        pixel past a cell's middle, or an edge exactly on a middle (a rounding tie); Gaze-LLE's own maps:
        datasets.peer_transforms.gazelle_head_maps."""
        given = list(head_map.shape)
        if head_map.dim() == 4 and head_map.shape[1] == 1:
            head_map = head_map[:, 0]
        step = self.scene_backbone.input_size // self.feature_side
        if head_map.dim() == 3 and tuple(head_map.shape[1:]) == (self.scene_backbone.input_size,) * 2:
            head_map = head_map[:, step // 2::step, step // 2::step]
        if head_map.dim() != 3 or tuple(head_map.shape[1:]) != (self.feature_side,) * 2:
            raise ValueError(
                f"gazelle backbone: the head map must lie on the {self.feature_side} x {self.feature_side} token grid "
                f"or be a {self.scene_backbone.input_size}-pixel head mask "
                f"([N, {self.feature_side}, {self.feature_side}] or [N, 1, ...]: datasets.peer_transforms."
                f"gazelle_head_maps of the normalised head boxes, as Gaze-LLE computes it), got {given}")
        return head_map

    def forward(self, image, head_mask, face=None, depth=None, scene_tokens=None) -> dict[str, torch.Tensor]:
        if depth is not None:
            raise ValueError("depth maps were given to gaze_backbone gazelle, which has no depth stream")
        prompted = self.prompt(self.scene_features(image, scene_tokens), head_mask)
        return {"conditioning": to_tokens(prompted), "scene_face_feat": prompted}


class GazeLLEDecoder(nn.Module):
    """forward(features) -> {"heatmap": [N, 1, 2 side, 2 side] in [0, 1], "heatmap_logits": the map before the
    sigmoid, "inout_logit": [N] (positive: target in the frame; only with `inout`)}, `features["conditioning"]`
    being the [N, side^2, dim] tokens of `GazeLLEBackbone` (the direct decoders' contract of models/decoders.py).

    Parameter names are Gaze-LLE's (`inout_token`, `transformer`, `heatmap_head`, `inout_head`; the sigmoids, which
    have no parameters, are applied in forward). Gaze-LLE's final resize to its `out_size` is not built: at its
    448-pixel input the map already is its 64 x 64 (2 x 32), and the resize a no-op.
    """

    def __init__(self, dim: int = DIM, num_layers: int = 3, num_heads: int = 8, inout: bool = False):
        super().__init__()
        from timm.models.vision_transformer import Block  # Gaze-LLE's transformer block, with its defaults

        self.dim = dim
        self.inout_token = nn.Embedding(1, dim) if inout else None
        self.transformer = nn.Sequential(*[Block(dim=dim, num_heads=num_heads, mlp_ratio=4, drop_path=0.1)
                                           for _ in range(num_layers)])
        self.heatmap_head = nn.Sequential(nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
                                          nn.Conv2d(dim, 1, kernel_size=1, bias=False))
        self.inout_head = (nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 1))
                           if inout else None)

    @property
    def inout(self) -> bool:
        return self.inout_token is not None

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = features["conditioning"]
        people, cells, dim = tokens.shape
        side = math.isqrt(cells)
        if side * side != cells or dim != self.dim:
            raise ValueError(f"Gaze-LLE decoder: expected [N, side^2, {self.dim}] tokens, got {list(tokens.shape)}")
        if self.inout_token is not None:
            tokens = torch.cat([self.inout_token.weight[None].expand(people, -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = self.transformer(tokens)
        outputs = {}
        if self.inout_head is not None:
            outputs["inout_logit"] = self.inout_head(tokens[:, 0]).squeeze(-1)
            tokens = tokens[:, 1:]
        logits = self.heatmap_head(tokens.reshape(people, side, side, dim).permute(0, 3, 1, 2))
        return {"heatmap": torch.sigmoid(logits), "heatmap_logits": logits, **outputs}


class GazeLLE(nn.Module):
    """Gaze-LLE whole: `gaze_backbone` (GazeLLEBackbone) and `heatmap_decoder` (GazeLLEDecoder, under the name the
    framework gives direct decoders); `variant` names the released model it is (e.g. gazelle_dinov2_vitb14_inout),
    set by pretrained/peer_files.py."""

    def __init__(self, gaze_backbone: GazeLLEBackbone, decoder: GazeLLEDecoder, variant: str | None = None):
        super().__init__()
        if decoder.dim != gaze_backbone.context_dim:
            raise ValueError(f"Gaze-LLE decoder of width {decoder.dim} on a backbone of width "
                             f"{gaze_backbone.context_dim}")
        self.gaze_backbone, self.heatmap_decoder, self.variant = gaze_backbone, decoder, variant

    def forward(self, images: torch.Tensor, head_map: torch.Tensor,
                people_per_image: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images [B, 3, S, S] (datasets.peer_transforms.gazelle_image), head maps [N, side, side] of all their
        people in image order (datasets.peer_transforms.gazelle_head_maps), `people_per_image` [B] summing to N
        (default: one person per image). Each image is encoded once. Returns heatmaps [N, 64, 64] in [0, 1] and
        in/out probabilities [N] (target in the frame; None for a model without the in/out head): Gaze-LLE's
        "heatmap" and "inout", concatenated over the images."""
        counts = [1] * images.shape[0] if people_per_image is None else list(people_per_image)
        if len(counts) != images.shape[0] or sum(counts) != head_map.shape[0]:
            raise ValueError(f"people_per_image {counts} does not match {images.shape[0]} images and "
                             f"{head_map.shape[0]} head maps")
        scene = self.gaze_backbone.scene_features(images)
        scene = scene.repeat_interleave(torch.tensor(counts, device=scene.device), dim=0)
        tokens = to_tokens(self.gaze_backbone.prompt(scene, head_map))
        outputs = self.heatmap_decoder({"conditioning": tokens})
        inout_logit = outputs.get("inout_logit")
        return outputs["heatmap"][:, 0], None if inout_logit is None else torch.sigmoid(inout_logit)
