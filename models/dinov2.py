"""DINOv2 vision transformers as facebookresearch/dinov2's torch.hub models compute them (`dinov2_vits14`,
`dinov2_vitb14`, `dinov2_vitl14`; no register tokens), for encoders that must give the hub model's exact features:
Gaze-LLE's frozen scene encoder (models/gazelle.py).

Why not the `timm` backbone's timm model: timm resamples the 37 x 37 pretraining position table to the input's grid
with its own resampling, whereas the hub model interpolates it bicubically with `scale_factor = (grid + 0.1) / 37`
(DINOv2's `interpolate_offset`) and no antialiasing, which changes every feature by O(1). The blocks are timm's
`Block` (pre-norm attention and MLP with LayerScale, as DINOv2's), so the parameter names are the hub checkpoint's
and timm's `vit_*_patch14_dinov2` files' alike (pretrained/peer_files.py reads both).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # the hub models are built for 518 px: a 37 x 37 position table (+ the class token's)
INTERPOLATE_OFFSET = 0.1  # DINOv2's interpolate_offset: scale_factor = (grid + 0.1) / 37
# Architecture name -> (embedding width, blocks, heads): the hub's `dinov2_<name>` models.
ARCHITECTURES = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12), "vitl14": (1024, 24, 16)}


class PatchEmbedding(nn.Module):
    """Non-overlapping 14 x 14 patches -> tokens [B, h*w, width] (attribute `proj`, the checkpoints' name)."""

    def __init__(self, width: int, patch_size: int = PATCH_SIZE):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2Encoder(nn.Module):
    """forward(image [B, 3, S, S], ImageNet-normalised) -> patch features [B, width, S/14, S/14] after the final norm
    (the hub model's `forward_features(x)["x_norm_patchtokens"]` laid out on the patch grid, as Gaze-LLE does).

    Attributes read by the models built on it: `channels` (width), `side` (patch grid side), `model_name`
    (`dinov2_<architecture>`).
    """

    def __init__(self, architecture: str = "vitb14", input_size: int = 448, pretrain_grid: int = PRETRAIN_GRID):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"DINOv2 architecture {architecture!r} is not supported; known: {sorted(ARCHITECTURES)} "
                             "(the hub's ViT-g/14 has a SwiGLU MLP and the _reg models register tokens, which these "
                             "encoders do not build)")
        if input_size % PATCH_SIZE:
            raise ValueError(f"input_size {input_size} is not a multiple of DINOv2's patch size {PATCH_SIZE}")
        width, depth, heads = ARCHITECTURES[architecture]
        self.architecture, self.model_name = architecture, f"dinov2_{architecture}"
        self.channels, self.side, self.input_size = width, input_size // PATCH_SIZE, input_size
        self.pretrain_grid = pretrain_grid
        self.patch_embed = PatchEmbedding(width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid ** 2, width))
        from timm.models.vision_transformer import Block  # here: building a ResNet model never imports timm

        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio=4.0, qkv_bias=True, init_values=1.0,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU)
            for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        # DINOv2's initialisation (a model trained from scratch; release weights replace it).
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embeddings(self, side: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The position table for a side x side patch grid, [1, 1 + side^2, width]: the pretraining table itself at
        its own size, else its patch part resampled (in float32) as the hub model's `interpolate_pos_encoding` does,
        returned in `dtype` (default: the table's)."""
        if side == self.pretrain_grid:
            return self.pos_embed
        table = self.pos_embed.float()
        grid = table[:, 1:].reshape(1, self.pretrain_grid, self.pretrain_grid, -1).permute(0, 3, 1, 2)
        scale = (side + INTERPOLATE_OFFSET) / self.pretrain_grid
        grid = F.interpolate(grid, scale_factor=(scale, scale), mode="bicubic", antialias=False)
        if grid.shape[-2:] != (side, side):
            raise ValueError(f"DINOv2 position interpolation gave a {tuple(grid.shape[-2:])} grid, not {side} x {side}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, side * side, -1)
        return torch.cat([table[:, :1], grid], dim=1).to(dtype or self.pos_embed.dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != image.shape[-2] or image.shape[-1] % PATCH_SIZE:
            raise ValueError(f"DINOv2 encoder input must be square with a side divisible by {PATCH_SIZE}, got "
                             f"{list(image.shape)}")
        batch, side = image.shape[0], image.shape[-1] // PATCH_SIZE
        tokens = self.patch_embed(image)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embeddings(side, tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        patches = self.norm(tokens)[:, 1:]
        return patches.view(batch, side, side, self.channels).permute(0, 3, 1, 2)


def architecture_of(width: int, depth: int) -> str | None:
    """The architecture name with this embedding width and number of blocks, or None."""
    return next((name for name, (w, d, _) in ARCHITECTURES.items() if (w, d) == (width, depth)), None)


def grid_of(pos_embed_shape) -> int:
    """Side of the square position table of a [1, 1 + M*M, width] `pos_embed`; ValueError when it is not square."""
    cells = int(pos_embed_shape[1]) - 1
    side = math.isqrt(max(cells, 0))
    if side * side != cells:
        raise ValueError(f"pos_embed {list(pos_embed_shape)}: {cells} patch positions are not a square grid")
    return side
