"""Gaze backbones: networks that turn (scene image, head mask, face crop) into the UNet's conditioning tokens and
the in/out head's scene+face map, plus the tiny registry (`BACKBONES`, `register_backbone`) that selects them by the
`gaze_backbone` option, and `import_backbone_plugins`, which imports the modules of `backbone_plugins` first.

The contract (README, "Your own gaze backbone"): the registry builds a backbone with `cls.from_config(config)` when
the class defines it, else `cls(config)`; `config` holds every option as an attribute. Its forward(image [B,3,S,S]
ImageNet-normalised RGB, head_mask [B,1,S,S] binary, face [B,3,S,S], depth [B,3,S,S] colour-mapped depth, passed
only with depth_flag) returns {"conditioning": [B, N_tokens, context_dim], "scene_face_feat": [B, feature_channels,
feature_side, feature_side]}, and it exposes `context_dim` (= unet_context_vector), `feature_channels` and
`feature_side` for the parts built around it. Streams that freeze_scene / freeze_face stop are the attributes
`scene_backbone` / `face_backbone`.
"""

import hashlib
import importlib
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from models.resnet import Bottleneck, ResNet

BACKBONES: dict[str, type[nn.Module]] = {}
REQUIRED_ATTRIBUTES = ("context_dim", "feature_channels", "feature_side")
_PLUGIN_FILES: dict[Path, ModuleType] = {}  # .py plug-ins already imported, by resolved path


def register_backbone(name: str):
    """Class decorator adding a gaze backbone (an nn.Module built by `from_config(config)` or `__init__(config)`)
    to BACKBONES under `name`, the value of the `gaze_backbone` option that selects it."""

    def register(cls):
        if name in BACKBONES:
            raise ValueError(f"gaze backbone {name!r} is registered twice ({BACKBONES[name].__module__}."
                             f"{BACKBONES[name].__name__}, {cls.__module__}.{cls.__name__})")
        BACKBONES[name] = cls
        return cls

    return register


def import_backbone_plugins(plugins, named_in: str | None = None) -> list[ModuleType]:
    """Import each plug-in (an importable module name, or a path to a .py file) once, so that its
    `@register_backbone` runs. A plug-in that cannot be found is an error naming it and what to do.

    named_in: the checkpoint whose stored configuration names the plug-ins (evaluation, predict.py, a resume): their
    import, which runs their code, is then announced first in one line naming them and the checkpoint."""
    pending = [str(plugin) for plugin in plugins or () if not _imported(plugin)]
    if named_in and pending:
        print(f"importing the backbone plug-in(s) {pending} named in the checkpoint {named_in} (backbone_plugins): "
              "their code runs now; import only code you trust, or pass --backbone_plugins to name other files "
              "(docs/trust.md)", file=sys.stderr)
    modules = []
    for plugin in plugins or ():
        if str(plugin).endswith(".py"):
            path = Path(plugin).expanduser().resolve()
            if path not in _PLUGIN_FILES:
                if not path.is_file():
                    raise ModuleNotFoundError(
                        f"backbone plug-in {plugin!r} (backbone_plugins) not found: {path} does not exist. A "
                        "checkpoint names the plug-ins it was trained with; pass --backbone_plugins with the file's "
                        "current location")
                name = f"gaze_backbone_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
                _PLUGIN_FILES[path] = module
            modules.append(_PLUGIN_FILES[path])
        else:
            try:
                modules.append(importlib.import_module(plugin))
            except ModuleNotFoundError as error:
                if error.name is None or not str(plugin).startswith(error.name):
                    raise  # the plug-in exists but one of its own imports is missing: torch's message says which
                raise ModuleNotFoundError(
                    f"backbone plug-in module {plugin!r} (backbone_plugins) cannot be imported: no module named "
                    f"{error.name!r} on the Python path. A checkpoint names the plug-ins it was trained with; make it "
                    "importable (install it or add its folder to PYTHONPATH) or pass --backbone_plugins with a .py "
                    "path", name=error.name) from error
    return modules


def _imported(plugin) -> bool:
    if str(plugin).endswith(".py"):
        return Path(plugin).expanduser().resolve() in _PLUGIN_FILES
    return str(plugin) in sys.modules


def build_backbone(name: str, config) -> nn.Module:
    """Build the backbone registered as `name` and check that it has the attributes the model reads."""
    if name not in BACKBONES:
        plugins = list(getattr(config, "backbone_plugins", None) or [])
        raise KeyError(f"unknown gaze backbone {name!r}; registered: {sorted(BACKBONES)} (backbone_plugins "
                       f"imported: {plugins or 'none'}; a plug-in registers its name with @register_backbone)")
    cls = BACKBONES[name]
    backbone = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    missing = [attribute for attribute in REQUIRED_ATTRIBUTES if not hasattr(backbone, attribute)]
    if missing:
        raise AttributeError(f"gaze backbone {name!r} ({cls.__module__}.{cls.__name__}) lacks the attributes "
                             f"{missing}; every backbone exposes {list(REQUIRED_ATTRIBUTES)} (README, \"Your own gaze "
                             "backbone\")")
    if backbone.context_dim != config.unet_context_vector:
        raise ValueError(f"gaze backbone {name!r} gives tokens of width {backbone.context_dim} (context_dim), but "
                         f"unet_context_vector is {config.unet_context_vector}")
    return backbone


class SinusoidalPositionalEncoding2D(nn.Module):
    """Adds the original's 2-D sinusoidal encoding to a feature map [B, C, h, w].

    The first ceil(C/4)*2 channels encode the row index, the next as many the column index, each as interleaved
    (sin, cos) pairs at frequencies 1 / 10000^(2i / (ceil(C/4)*2)); the result is cut to C channels. Same values
    as the `positional_encodings` package's PositionalEncoding2D that the original used, for any h, w and C.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        per_axis = math.ceil(channels / 4) * 2
        # Persistent so that the original checkpoints' `penc.inv_freq` entries map onto it one to one.
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, per_axis, 2).float() / per_axis))

    def encoding(self, height: int, width: int) -> torch.Tensor:
        """The encoding [C, height, width]."""

        def axis(length):
            angles = torch.arange(length, device=self.inv_freq.device).float()[:, None] * self.inv_freq[None]
            return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # [length, per_axis]

        rows = axis(height)[:, None, :].expand(height, width, -1)
        cols = axis(width)[None, :, :].expand(height, width, -1)
        return torch.cat([rows, cols], dim=-1)[:, :, : self.channels].permute(2, 0, 1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map + self.encoding(*feature_map.shape[2:]).to(feature_map.dtype)


def to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, h*w, C], cells in row-major order (token index = row * w + column)."""
    return feature_map.flatten(2).transpose(1, 2)


def pooled_head_side(input_size: int) -> int:
    """Side of the head mask after three 3x3/2 max-pools (224 -> 28), the head input of the attention layer."""
    side = input_size
    for _ in range(3):
        side = (side - 1) // 2 + 1
    return side


def head_conditioned_attention(attn: nn.Linear, scene_map: torch.Tensor, head_mask: torch.Tensor,
                               face_map: torch.Tensor) -> torch.Tensor:
    """Chong et al.'s attention: re-weight the scene map's h*w cells by softmax(attn([pooled head mask ; mean face
    feature])), i.e. where the head is and what the face shows decide which scene cells matter."""
    head = head_mask
    for _ in range(3):
        head = F.max_pool2d(head, kernel_size=3, stride=2, padding=1)
    logits = attn(torch.cat([head.flatten(1), face_map.mean(dim=(2, 3))], dim=1))
    weights = logits.softmax(dim=1).view(-1, 1, *scene_map.shape[2:])
    return scene_map * weights


class SceneFaceStreams(nn.Module):
    """Scene ResNet on cat(image, head mask) (4 channels), optionally a face ResNet on the face crop and a depth
    ResNet on cat(colour-mapped depth, head mask) (4 channels, the RGB+depth reference of Tonini et al. 2022); all
    Bottleneck ResNets in the original's layout. Base of the registered backbones: builds, checks and runs them."""

    def __init__(self, scene_layers, face_layers, scene_inplanes: int, face_inplanes: int, input_size: int,
                 use_face: bool = True, head_attention: bool = False, depth_layers=None, depth_inplanes: int = 64,
                 block: type[nn.Module] = Bottleneck):
        super().__init__()
        if head_attention and not use_face:
            raise ValueError("adm_attention_module: true needs the face stream (its weights come from the face "
                             "features), but head_flag is false")
        self.input_size = input_size
        self.scene_backbone = ResNet(block, scene_layers, inplanes=scene_inplanes, in_channels=4)
        self.stream_channels = self.scene_backbone.out_channels
        self.feature_side = self.scene_backbone.output_size(input_size)
        self.face_backbone = None
        if use_face:
            self.face_backbone = ResNet(block, face_layers, inplanes=face_inplanes, in_channels=3)
            self._check_same_shape("face", self.face_backbone, face_layers, face_inplanes, scene_layers, scene_inplanes)
        self.depth_backbone = None
        if depth_layers is not None:
            self.depth_backbone = ResNet(block, depth_layers, inplanes=depth_inplanes, in_channels=4)
            self._check_same_shape("depth", self.depth_backbone, depth_layers, depth_inplanes, scene_layers,
                                   scene_inplanes)
        self.attn = None
        if head_attention:
            in_features = pooled_head_side(input_size) ** 2 + self.stream_channels
            self.attn = nn.Linear(in_features, self.feature_side ** 2)

    def _check_same_shape(self, name, backbone, layers, inplanes, scene_layers, scene_inplanes) -> None:
        channels, side = backbone.out_channels, backbone.output_size(self.input_size)
        if (channels, side) != (self.stream_channels, self.feature_side):
            raise ValueError(
                f"scene and {name} ResNets must give maps of the same shape to be combined: scene "
                f"(list_resnet_scene_layers={list(scene_layers)}, resnet_scene_inplanes={scene_inplanes}) gives "
                f"{self.stream_channels} x {self.feature_side} x {self.feature_side}, {name} "
                f"(list_resnet_{name}_layers={list(layers)}, resnet_{name}_inplanes={inplanes}) gives "
                f"{channels} x {side} x {side} at input_size {self.input_size}"
            )

    def streams(self, image, head_mask, face, depth=None):
        """(scene map, face map or None, depth map or None), each [B, C, h, w]; with the head-conditioned attention
        the scene and depth maps are re-weighted by the same weights (as in the RGB+depth reference)."""
        inputs = [("image", image, 3), ("head_mask", head_mask, 1), ("face", face, 3)]
        if self.depth_backbone is not None:
            if depth is None:
                raise ValueError("this gaze backbone has a depth stream (depth_flag: true) but no depth maps were "
                                 "given; the dataset returns them as 'depth' when depth_flag is on")
            inputs.append(("depth", depth, 3))
        elif depth is not None:
            raise ValueError("depth maps were given to a gaze backbone without a depth stream (depth_flag: false)")
        for name, tensor, channels in inputs:
            expected = (channels, self.input_size, self.input_size)
            if tuple(tensor.shape[1:]) != expected:
                raise ValueError(f"gaze backbone input {name} must be [B, {', '.join(map(str, expected))}] "
                                 f"(input_size {self.input_size}), got {list(tensor.shape)}")
        scene_map = self.scene_backbone(torch.cat([image, head_mask], dim=1))
        depth_map = None
        if self.depth_backbone is not None:
            depth_map = self.depth_backbone(torch.cat([depth.to(image.dtype), head_mask], dim=1))
        if self.face_backbone is None:
            return scene_map, None, depth_map
        face_map = self.face_backbone(face)
        if self.attn is not None:
            scene_map = head_conditioned_attention(self.attn, scene_map, head_mask, face_map)
            if depth_map is not None:
                depth_map = head_conditioned_attention(self.attn, depth_map, head_mask, face_map)
        return scene_map, face_map, depth_map


@register_backbone("original")
class OriginalGazeBackbone(SceneFaceStreams):
    """DiffusionGaze's backbone: scene and face maps become h*w tokens each (98 x 1024 at 224 input), each stream
    with its own 2-D positional encoding; `scene_face_feat` = cat(scene, face).

    With head_attention (adm_attention_module) Chong et al.'s attention re-weights the scene map before it is
    tokenised. Without the face stream (head_flag: false) the scene input still carries the head mask, as in the
    original, and only scene tokens condition the UNet. As in the original, the positional encodings are added only
    in the final configuration (face stream, no attention module): the attention variant (branch main) and the
    scene-only variant (branches point_image_diffusion / PointLoss) tokenise the maps as they are, so converted
    checkpoints of those variants give the original's outputs. The original saved its positional-encoding buffers
    (and its attention layer) in every variant; entries a variant does not use are reported as dropped when loading
    (`ignored_checkpoint_keys`).
    """

    def __init__(self, scene_layers, face_layers, scene_inplanes: int, face_inplanes: int, input_size: int,
                 context_dim: int, use_face: bool = True, head_attention: bool = False, depth_layers=None,
                 depth_inplanes: int = 64):
        super().__init__(scene_layers, face_layers, scene_inplanes, face_inplanes, input_size, use_face,
                         head_attention, depth_layers, depth_inplanes)
        if self.stream_channels != context_dim:
            raise ValueError(
                f"the 'original' gaze backbone uses the ResNet maps as conditioning tokens, so their channels must "
                f"equal unet_context_vector: the ResNets (list_resnet_scene_layers={list(scene_layers)}, "
                f"resnet_scene_inplanes={scene_inplanes}) give {self.stream_channels}, unet_context_vector is "
                f"{context_dim}"
            )
        self.context_dim = context_dim
        self.feature_channels = self.stream_channels * (2 if use_face else 1)
        encoded = use_face and not head_attention  # the original's final configuration
        self.scene_positional_encoding = SinusoidalPositionalEncoding2D(context_dim) if encoded else None
        self.face_positional_encoding = SinusoidalPositionalEncoding2D(context_dim) if encoded else None
        self.depth_positional_encoding = (SinusoidalPositionalEncoding2D(context_dim)
                                          if encoded and depth_layers is not None else None)
        # The original built its attention layer, both encodings and the face ResNet in every variant.
        self.ignored_checkpoint_keys = (
            (() if head_attention else ("attn.",)) + (() if use_face else ("face_backbone.",))
            + (() if encoded else ("scene_positional_encoding.", "face_positional_encoding.")))

    has_depth = False  # original_depth_tokens adds the depth stream

    @classmethod
    def from_config(cls, config):
        if bool(config.depth_flag) != cls.has_depth:
            raise ValueError(
                "gaze_backbone 'original_depth_tokens' is the original's streams with a depth stream: it needs "
                "depth_flag: true" if cls.has_depth else
                "gaze_backbone 'original' has no depth stream: with depth_flag use 'diffusiongaze_depth' "
                "(DiffusionGaze's depth model, what a configuration's depth_flag gives the original backbone) or "
                "'original_depth_tokens' (the depth map's own tokens, Tonini et al.'s fusion)")
        return cls(config.list_resnet_scene_layers, config.list_resnet_face_layers, config.resnet_scene_inplanes,
                   config.resnet_face_inplanes, config.input_size, config.unet_context_vector,
                   use_face=config.head_flag, head_attention=config.adm_attention_module,
                   depth_layers=config.list_resnet_depth_layers if config.depth_flag else None,
                   depth_inplanes=config.resnet_depth_inplanes)

    def forward(self, image, head_mask, face, depth=None) -> dict[str, torch.Tensor]:
        """With a depth stream the depth map adds h*w tokens of its own (between the scene and face tokens), and the
        in/out head sees scene + depth summed, as the RGB+depth reference's in/out decoder does."""
        scene_map, face_map, depth_map = self.streams(image, head_mask, face, depth)

        def encode(encoding, feature_map):
            return to_tokens(feature_map if encoding is None else encoding(feature_map))

        tokens = [encode(self.scene_positional_encoding, scene_map)]
        spatial = scene_map
        if depth_map is not None:
            tokens.append(encode(self.depth_positional_encoding, depth_map))
            spatial = scene_map + depth_map
        if face_map is None:
            return {"conditioning": torch.cat(tokens, dim=1), "scene_face_feat": spatial}
        tokens.append(encode(self.face_positional_encoding, face_map))
        return {"conditioning": torch.cat(tokens, dim=1), "scene_face_feat": torch.cat([spatial, face_map], dim=1)}


@register_backbone("original_depth_tokens")
class OriginalDepthTokensBackbone(OriginalGazeBackbone):
    """The `original` backbone plus a depth ResNet on cat(colour-mapped depth, head mask) whose map adds h*w tokens
    of its own (Tonini et al. 2022's late fusion of a depth stream), the in/out head seeing scene + depth summed.
    The same modules and parameter names as `original` with depth_flag in the project's earlier versions (the
    earlier option `depth_layout: tonini`)."""

    has_depth = True


class DepthFusionEncoder(nn.Module):
    """The original DiffusionGaze depth model's encoder: Conv1x1(C_in -> C_out)-BN-ReLU (2048 -> 1024 at full size;
    the original's gaze/modules/Encoder.py, whose second stage is commented out)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))


@register_backbone("diffusiongaze_depth")
class DiffusionGazeDepthBackbone(SceneFaceStreams):
    """DiffusionGaze's `depth_flag` model (the original's gaze/gaze_net_module.py on branch main): scene ResNet on
    cat(image, head mask), face ResNet on the face crop, depth ResNet on cat(depth, head mask);
    scene_encoder(cat(scene, face)) and depth_encoder(cat(depth, face)), each Conv1x1(2C -> context_dim)-BN-ReLU;
    the conditioning is the encoded scene's h*w tokens followed by the encoded depth's (98 x 1024 at full size),
    without positional encoding; the in/out head sees cat(scene, face) (the depth stream does not reach it).

    The original built its head-conditioned attention layer and its two positional encodings in this model too but
    never used them: their checkpoint entries are reported as dropped when loading (`ignored_checkpoint_keys`).
    """

    ignored_checkpoint_keys = ("attn.", "scene_positional_encoding.", "face_positional_encoding.")

    def __init__(self, scene_layers, face_layers, scene_inplanes: int, face_inplanes: int, input_size: int,
                 context_dim: int, depth_layers, depth_inplanes: int = 64):
        super().__init__(scene_layers, face_layers, scene_inplanes, face_inplanes, input_size, use_face=True,
                         head_attention=False, depth_layers=depth_layers, depth_inplanes=depth_inplanes)
        self.context_dim = context_dim
        self.feature_channels = 2 * self.stream_channels
        self.scene_encoder = DepthFusionEncoder(2 * self.stream_channels, context_dim)
        self.depth_encoder = DepthFusionEncoder(2 * self.stream_channels, context_dim)

    @classmethod
    def from_config(cls, config):
        problems = [text for bad, text in (
            (not config.depth_flag, "depth_flag: true (it is the depth model)"),
            (not config.head_flag, "head_flag: true (it always has the face stream)"),
            (config.adm_attention_module, "adm_attention_module: false (the original ignored the attention module "
                                          "in its depth model)"),
        ) if bad]
        if problems:
            raise ValueError("gaze_backbone 'diffusiongaze_depth' is the original DiffusionGaze depth model (what "
                             "depth_flag gives the original backbone), which needs " + "; ".join(problems)
                             + "; 'original_depth_tokens' and 'chong' take a depth stream of Tonini et al.'s kind")
        return cls(config.list_resnet_scene_layers, config.list_resnet_face_layers, config.resnet_scene_inplanes,
                   config.resnet_face_inplanes, config.input_size, config.unet_context_vector,
                   depth_layers=config.list_resnet_depth_layers, depth_inplanes=config.resnet_depth_inplanes)

    def forward(self, image, head_mask, face, depth=None) -> dict[str, torch.Tensor]:
        scene_map, face_map, depth_map = self.streams(image, head_mask, face, depth)
        scene_encoding = self.scene_encoder(torch.cat([scene_map, face_map], dim=1))
        depth_encoding = self.depth_encoder(torch.cat([depth_map, face_map], dim=1))
        return {"conditioning": torch.cat([to_tokens(scene_encoding), to_tokens(depth_encoding)], dim=1),
                "scene_face_feat": torch.cat([scene_map, face_map], dim=1)}


class SceneEncoder(nn.Module):
    """Chong et al.'s saliency encoder: Conv1x1(2C -> C)-BN-ReLU-Conv1x1(C -> C/2)-BN-ReLU (2048 -> 1024 -> 512)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels // 2, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels // 2)
        self.conv2 = nn.Conv2d(in_channels // 2, in_channels // 4, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(in_channels // 4)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = in_channels // 4
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


@register_backbone("chong")
class ChongGazeBackbone(SceneFaceStreams):
    """Chong et al. 2020's layout: head-conditioned attention on the scene map, cat(attended scene, face)
    (`scene_face_feat`, 2048 x 7 x 7) through the encoder to 512 x 7 x 7 (`scene_encoding`, the input of Chong's
    own heatmap decoder, models/chong.py), whose cells (plus a 2-D positional encoding) are the conditioning tokens
    (49 x 512). `block`: the ResNets' block (Chong's spatio-temporal model has its own, models.chong)."""

    def __init__(self, scene_layers, face_layers, scene_inplanes: int, face_inplanes: int, input_size: int,
                 context_dim: int, depth_layers=None, depth_inplanes: int = 64, block: type[nn.Module] = Bottleneck):
        super().__init__(scene_layers, face_layers, scene_inplanes, face_inplanes, input_size, use_face=True,
                         head_attention=True, depth_layers=depth_layers, depth_inplanes=depth_inplanes, block=block)
        self.feature_channels = 2 * self.stream_channels
        self.scene_encoder = SceneEncoder(self.feature_channels)
        self.depth_encoder = SceneEncoder(self.feature_channels) if depth_layers is not None else None
        if self.scene_encoder.out_channels != context_dim:
            raise ValueError(
                f"gaze_backbone 'chong' encodes the {self.feature_channels}-channel scene+face map to "
                f"{self.scene_encoder.out_channels} channels (Chong et al.'s encoder), so unet_context_vector must be "
                f"{self.scene_encoder.out_channels}, got {context_dim}"
            )
        self.context_dim = context_dim
        self.positional_encoding = SinusoidalPositionalEncoding2D(context_dim)

    @classmethod
    def from_config(cls, config):
        if not config.head_flag or not config.adm_attention_module:
            raise ValueError(
                "gaze_backbone 'chong' is Chong et al.'s layout, which always uses the face stream and the "
                "head-conditioned attention: set head_flag: true and adm_attention_module: true "
                f"(got head_flag: {config.head_flag}, adm_attention_module: {config.adm_attention_module})"
            )
        return cls(config.list_resnet_scene_layers, config.list_resnet_face_layers, config.resnet_scene_inplanes,
                   config.resnet_face_inplanes, config.input_size, config.unet_context_vector,
                   depth_layers=config.list_resnet_depth_layers if config.depth_flag else None,
                   depth_inplanes=config.resnet_depth_inplanes)

    def forward(self, image, head_mask, face, depth=None) -> dict[str, torch.Tensor]:
        """With a depth stream (Tonini et al.'s late fusion): the encoded scene and depth maps are summed into the
        conditioning, and the in/out head sees cat(scene + depth, face)."""
        scene_map, face_map, depth_map = self.streams(image, head_mask, face, depth)
        encoding = self.scene_encoder(torch.cat([scene_map, face_map], dim=1))
        spatial = scene_map
        if depth_map is not None:
            encoding = encoding + self.depth_encoder(torch.cat([depth_map, face_map], dim=1))
            spatial = scene_map + depth_map
        scene_face_feat = torch.cat([spatial, face_map], dim=1)
        return {"conditioning": to_tokens(self.positional_encoding(encoding)), "scene_face_feat": scene_face_feat,
                "scene_encoding": encoding}
