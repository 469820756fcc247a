"""The `timm` gaze backbone: any timm model as the scene (and optionally face) encoder, Gaze-LLE style.

A convolutional model gives its last feature map; a vision transformer (DINOv2, DINOv3, EVA, SigLIP, ...) gives its
patch tokens laid out on the patch grid, after the final norm, with its class and register tokens split off
(`timm_prefix_tokens`: dropped, or kept as extra conditioning tokens). A 1x1 projection takes the encoder's channels
to `unet_context_vector`; the head position enters as Gaze-LLE's learned head-prompt embedding added to the cells
inside the head box (`head_position: prompt`; the encoder sees RGB only, so a frozen encoder's tokens can be cached)
or as a 4th input channel of the encoder (`head_position: mask_channel`); every cell then gets the project's 2-D
sinusoidal positional encoding, because the UNet's cross-attention is otherwise blind to where a token lies.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones import SinusoidalPositionalEncoding2D, register_backbone, to_tokens


class TimmEncoder(nn.Module):
    """A timm model (attribute `model`, timm's parameter names) as a feature extractor: forward(x [B, C_in, S, S]) ->
    (map [B, channels, side, side], prefix tokens [B, num_prefix, channels] or None).

    A timm ViT (a model with `num_prefix_tokens` and a patch grid) gives tokens: the first `num_prefix_tokens` are
    class/register tokens, the rest the patch grid in row-major order. For other models the output kind is found
    once, with a forward pass on zeros at construction: a 3-D output is tokens as above; a 4-D output is a feature
    map, channels first or (Swin-like models) last.
    """

    def __init__(self, model_name: str, input_size: int, in_channels: int = 3, pretrained: bool = False,
                 weights: str | None = None, trust_legacy: bool = False):
        super().__init__()
        import timm  # here, so that building the ResNet backbones never pays for importing timm

        if not timm.is_model(model_name.split(".")[0]):
            close = timm.list_models(f"*{model_name.split('.')[0][:12]}*")[:8]
            raise ValueError(f"timm_model {model_name!r} is not a timm model name" +
                             (f"; similar: {close}" if close else "; see timm.list_models()"))
        kwargs = dict(pretrained=pretrained, num_classes=0)
        try:  # transformers take their input size (position embeddings are resampled to it); CNNs take any size
            self.model = timm.create_model(model_name, img_size=input_size, **kwargs)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
            self.model = timm.create_model(model_name, **kwargs)
        self.model_name, self.input_size = model_name, input_size
        self.load_report = load_encoder_weights(self.model, weights, trust_legacy) if weights else None
        if in_channels == 4:
            add_mask_channel(self.model)
        elif in_channels != 3:
            raise ValueError(f"TimmEncoder takes 3 (RGB) or 4 (RGB + head mask) input channels, got {in_channels}")
        self.in_channels = in_channels
        self.channels = self.model.num_features
        self.num_prefix_tokens, self.channels_last, self.side = self._probe()

    @torch.no_grad()
    def _probe(self) -> tuple[int, bool, int]:
        grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
        if hasattr(self.model, "num_prefix_tokens") and grid is not None:  # a timm ViT: no trial forward needed
            self._check_patch_size()
            if grid[0] != grid[1]:
                raise ValueError(f"timm model {self.model_name!r} has a {grid[0]} x {grid[1]} patch grid; the gaze "
                                 "inputs are square")
            return int(self.model.num_prefix_tokens), False, int(grid[0])
        was_training = self.model.training
        self.model.eval()
        out = self.model.forward_features(torch.zeros(1, self.in_channels, self.input_size, self.input_size))
        self.model.train(was_training)
        if out.dim() == 3:
            prefix = int(getattr(self.model, "num_prefix_tokens", 0))
            self._check_patch_size()
            cells = out.shape[1] - prefix
            side = int(round(cells ** 0.5))
            if side * side != cells:
                raise ValueError(f"timm model {self.model_name!r} gives {cells} patch tokens at input_size "
                                 f"{self.input_size} (after {prefix} prefix tokens), not a square grid")
            return prefix, False, side
        if out.dim() == 4:
            if out.shape[1] == self.channels:
                return 0, False, out.shape[2]
            if out.shape[3] == self.channels:
                return 0, True, out.shape[1]
        raise ValueError(f"timm model {self.model_name!r}: forward_features gives {list(out.shape)}, neither tokens "
                         f"[B, N, {self.channels}] nor a map with {self.channels} channels")

    def _check_patch_size(self) -> None:
        patch = getattr(getattr(self.model, "patch_embed", None), "patch_size", None)
        patch = patch[0] if isinstance(patch, (tuple, list)) else patch
        if patch and self.input_size % patch:
            raise ValueError(f"input_size {self.input_size} is not a multiple of the patch size {patch} of timm "
                             f"model {self.model_name!r}: its last {self.input_size % patch} pixel rows and columns "
                             f"would be ignored and the head position misplaced; use e.g. "
                             f"{self.input_size // patch * patch or patch} or {(self.input_size // patch + 1) * patch}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model.forward_features(x)
        if out.dim() == 3:
            prefix = out[:, : self.num_prefix_tokens] if self.num_prefix_tokens else None
            patches = out[:, self.num_prefix_tokens:]
            # contiguous: the same memory layout as a map read back from the feature cache, hence the same sums
            scene_map = patches.transpose(1, 2).reshape(x.shape[0], self.channels, self.side, self.side).contiguous()
            return scene_map, prefix
        return (out.permute(0, 3, 1, 2).contiguous() if self.channels_last else out), None


def add_mask_channel(model: nn.Module) -> None:
    """Give the model's first convolution (timm's `pretrained_cfg["first_conv"]`) a 4th input channel for the head
    mask, with zero weights: the RGB filters are unchanged, so pretrained features start exactly as pretrained."""
    name = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if not name:
        raise ValueError(f"{type(model).__name__}: timm does not name its first convolution (pretrained_cfg "
                         "first_conv), so head_position mask_channel cannot add a channel; use head_position prompt")
    names = name if isinstance(name, (list, tuple)) else [name]
    for conv_name in names:
        parent_name, _, attribute = conv_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = getattr(parent, attribute)
        if not isinstance(conv, nn.Conv2d) or conv.in_channels != 3:
            raise ValueError(f"{type(model).__name__}.{conv_name} is not a 3-channel Conv2d; head_position "
                             "mask_channel cannot add a channel to it; use head_position prompt")
        widened = nn.Conv2d(4, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                            conv.groups, conv.bias is not None, conv.padding_mode)
        with torch.no_grad():
            widened.weight.zero_()
            widened.weight[:, :3] = conv.weight
            if conv.bias is not None:
                widened.bias.copy_(conv.bias)
        setattr(parent, attribute, widened)


def load_encoder_weights(model: nn.Module, path: str | Path, trust_legacy: bool = False):
    """Load a local weight file into a timm model: the file's state dict (raw, or under model / state_dict),
    passed through the model family's own `checkpoint_filter_fn` (timm's conversions, e.g. position embeddings
    resampled to the input size), then loaded non-strictly. Returns a pretrained.loading.LoadReport, printed; a
    file that fills nothing or has a tensor of the wrong shape is an error. `trust_legacy`: the option
    trust_legacy_checkpoint (a file that needs full unpickling is refused without it)."""
    from pretrained.loading import LoadReport, load_checkpoint_state  # the file reading shared with init_weights

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights: {path} does not exist")
    state = load_checkpoint_state(path, trust_legacy=trust_legacy)
    family = sys.modules.get(type(model).__module__)
    filter_fn = getattr(family, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    own = model.state_dict()
    mismatched = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
                  if key in own and own[key].shape != value.shape]
    report = LoadReport(scheme="timm", source=str(path),
                        loaded=[key for key in state if key in own and own[key].shape == state[key].shape],
                        missing=[key for key in own if key not in state],
                        unexpected=[key for key in state if key not in own], shape_mismatched=mismatched)
    if mismatched or not report.loaded:
        raise ValueError(f"backbone_weights {path} does not fit timm model {type(model).__name__}:\n{report.summary()}")
    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    print(report.summary().replace("init weights from", "backbone_weights: encoder weights from", 1))
    return report


@register_backbone("timm")
class TimmGazeBackbone(nn.Module):
    """Scene encoder (and, with face_stream, a face encoder of the same timm model) -> conditioning tokens.

    conditioning = [scene cells (projected, + head prompt, + positional encoding); the kept prefix tokens (projected,
    + a learned embedding each); face cells (projected, + positional encoding)]; scene_face_feat = the projected scene
    map with the head prompt (and the projected face map), [B, feature_channels, side, side].
    """

    def __init__(self, model_name: str, input_size: int, context_dim: int, head_position: str = "prompt",
                 prefix_tokens: str = "drop", face_stream: bool = False, pretrained: bool = False,
                 weights: str | None = None, trust_legacy: bool = False):
        super().__init__()
        if head_position not in ("prompt", "mask_channel"):
            raise ValueError(f"head_position must be prompt or mask_channel, got {head_position!r}")
        if prefix_tokens not in ("drop", "keep"):
            raise ValueError(f"timm_prefix_tokens must be drop or keep, got {prefix_tokens!r}")
        self.head_position, self.context_dim = head_position, context_dim
        self.scene_backbone = TimmEncoder(model_name, input_size, 4 if head_position == "mask_channel" else 3,
                                          pretrained, weights, trust_legacy)
        channels, side = self.scene_backbone.channels, self.scene_backbone.side
        self.scene_projection = nn.Conv2d(channels, context_dim, kernel_size=1)
        # Gaze-LLE's head token: one learned vector (nn.Embedding's N(0, 1) start) added where the head is.
        self.head_prompt = nn.Parameter(torch.randn(context_dim)) if head_position == "prompt" else None
        self.positional_encoding = SinusoidalPositionalEncoding2D(context_dim)
        prefix = self.scene_backbone.num_prefix_tokens if prefix_tokens == "keep" else 0
        self.prefix_projection = nn.Linear(channels, context_dim) if prefix else None
        self.prefix_embedding = nn.Parameter(torch.zeros(prefix, context_dim)) if prefix else None
        self.face_backbone = self.face_projection = None
        if face_stream:
            self.face_backbone = TimmEncoder(model_name, input_size, 3, pretrained, weights, trust_legacy)
            self.face_projection = nn.Conv2d(channels, context_dim, kernel_size=1)
        self.feature_channels = context_dim * (2 if face_stream else 1)
        self.feature_side = side
        self.num_tokens = side * side * (2 if face_stream else 1) + prefix

    @classmethod
    def from_config(cls, config):
        for name in ("depth_flag", "adm_attention_module"):
            if getattr(config, name, False):
                raise ValueError(f"{name}: true configures the ResNet backbones; gaze_backbone timm has no such "
                                 "stream / layer")
        return cls(config.timm_model, config.input_size, config.unet_context_vector,
                   head_position=config.head_position, prefix_tokens=config.timm_prefix_tokens,
                   face_stream=config.face_stream, pretrained=config.backbone_pretrained,
                   weights=config.backbone_weights,
                   trust_legacy=bool(getattr(config, "trust_legacy_checkpoint", False)))

    def encode_scene(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The scene encoder's output for RGB images (head_position prompt): what the feature cache stores."""
        return self.scene_backbone(image)

    def forward(self, image, head_mask, face, depth=None, scene_tokens=None) -> dict[str, torch.Tensor]:
        """`scene_tokens`: (map, prefix) as `encode_scene` returns them, e.g. from the feature cache."""
        if depth is not None:
            raise ValueError("depth maps were given to gaze_backbone timm, which has no depth stream")
        if scene_tokens is not None:
            scene_map, prefix = scene_tokens
        elif self.head_prompt is None:
            scene_map, prefix = self.scene_backbone(torch.cat([image, head_mask.to(image.dtype)], dim=1))
        else:
            scene_map, prefix = self.scene_backbone(image)
        scene = self.scene_projection(scene_map.to(self.scene_projection.weight.dtype))
        if self.head_prompt is not None:
            # Fraction of each cell inside the head box, so a head smaller than a patch still marks its cell.
            head = F.adaptive_avg_pool2d(head_mask.to(scene.dtype), scene.shape[-2:])
            scene = scene + head * self.head_prompt.to(scene.dtype)[None, :, None, None]
        tokens = [to_tokens(self.positional_encoding(scene))]
        if self.prefix_projection is not None:
            tokens.append(self.prefix_projection(prefix.to(scene.dtype)) + self.prefix_embedding.to(scene.dtype))
        maps = [scene]
        if self.face_backbone is not None:
            face_map = self.face_projection(self.face_backbone(face)[0])
            tokens.append(to_tokens(self.positional_encoding(face_map)))
            maps.append(face_map)
        return {"conditioning": torch.cat(tokens, dim=1), "scene_face_feat": torch.cat(maps, dim=1)}
