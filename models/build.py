"""get_model(config): builds the GazeDiffusionModel from the project's options (read by name with getattr)."""

import models.timm_backbone  # noqa: F401  (registers "timm"; timm itself is imported when one is built)
import models.gazelle  # noqa: F401  (registers "gazelle", Gaze-LLE's backbone)
from models.backbones import build_backbone, import_backbone_plugins
from models.gaze_diffusion import SCENE_CHANNELS, GazeDiffusionModel
from models.inout import InOutHead
from models.unet import UNetModel

MODEL_OPTIONS = (
    "list_resnet_scene_layers", "list_resnet_face_layers", "resnet_scene_inplanes", "resnet_face_inplanes",
    "input_size", "output_size", "unet_inout_channels", "unet_inplanes", "unet_residual",
    "list_unet_inplanes_multipliers", "list_unet_attention_levels", "unet_spatial_tf_heads",
    "unet_spatial_tf_layers", "unet_context_vector", "unet_dropout", "use_scale_shift_norm", "conv_resample",
    "resblock_updown", "adm_learn_sigma", "adm_attention_module", "attention_layout", "head_flag", "depth_flag",
    "list_resnet_depth_layers", "resnet_depth_inplanes", "depth_layout", "freeze_scene", "freeze_face", "concat_scene",
)


def get_model(config, init_backbone_weights: bool = True) -> GazeDiffusionModel:
    """Build the model. `config` is any object with the attributes in MODEL_OPTIONS (e.g. a SimpleNamespace).

    The modules of `backbone_plugins` are imported first, then the registered backbone `backbone_name` selects is
    built. `init_backbone_weights: false` skips the backbone's starting weights (backbone_pretrained,
    backbone_weights): for building a model whose weights a checkpoint then fills, so neither the network nor the
    original weight file is needed.
    """
    missing = [name for name in MODEL_OPTIONS if not hasattr(config, name)]
    if missing:
        raise AttributeError(f"get_model: the configuration lacks the model options {missing}")
    import_backbone_plugins(getattr(config, "backbone_plugins", None))
    backbone_config = config if init_backbone_weights else _Overridden(config, backbone_pretrained=False,
                                                                       backbone_weights=None)
    backbone = build_backbone(backbone_name(config), backbone_config)
    unet = UNetModel(
        in_channels=config.unet_inout_channels,
        model_channels=config.unet_inplanes,
        # A learned variance (Nichol & Dhariwal 2021) adds one output channel per input channel.
        out_channels=config.unet_inout_channels * (2 if config.adm_learn_sigma else 1),
        num_res_blocks=config.unet_residual,
        attention_resolutions=list(config.list_unet_attention_levels),
        channel_mult=list(config.list_unet_inplanes_multipliers),
        num_heads=config.unet_spatial_tf_heads,
        transformer_depth=config.unet_spatial_tf_layers,
        context_dim=config.unet_context_vector,
        dropout=config.unet_dropout,
        conv_resample=config.conv_resample,
        use_scale_shift_norm=config.use_scale_shift_norm,
        resblock_updown=config.resblock_updown,
        spatial_channels=SCENE_CHANNELS if config.concat_scene else 0,
    )
    if config.output_size % unet.downsample_factor:
        raise ValueError(
            f"output_size {config.output_size} (heatmap side) must be divisible by {unet.downsample_factor}, the "
            f"downsampling of a {len(config.list_unet_inplanes_multipliers)}-level UNet "
            f"(list_unet_inplanes_multipliers={list(config.list_unet_inplanes_multipliers)})"
        )
    inout_head = InOutHead(backbone.feature_channels, backbone.feature_side ** 2)
    model = GazeDiffusionModel(backbone, unet, inout_head,
                               spatial_size=config.output_size if config.concat_scene else None)
    if config.freeze_scene:
        model.freeze("scene_backbone")
    if config.freeze_face:
        if getattr(backbone, "face_backbone", None) is None:
            raise ValueError("freeze_face: true but head_flag: false builds no face stream to freeze"
                             if backbone_name(config) in ("original", "chong") else
                             f"freeze_face: true but the gaze backbone {backbone_name(config)!r} builds no face stream "
                             "to freeze (gaze_backbone timm: face_stream: true adds one)")
        model.freeze("face_backbone")
    return model


class _Overridden:
    """`config` with some attributes replaced (works for a Config, a SimpleNamespace or any object)."""

    def __init__(self, config, **overrides):
        self._config, self._overrides = config, overrides

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._overrides[name] if name in self._overrides else getattr(self._config, name)


def backbone_name(config) -> str:
    """The registered gaze backbone the options select: `gaze_backbone` ("original" when the option is absent, as in
    configurations stored before it existed), except that the original's own switches select their layouts:
    attention_layout -> "chong"; depth_flag with depth_layout: diffusiongaze (the default) -> "diffusiongaze_depth"
    (the original DiffusionGaze depth model). Such a switch together with another gaze_backbone is an error.
    depth_layout is read only with depth_flag."""
    name = getattr(config, "gaze_backbone", "original")
    depth_layout = getattr(config, "depth_layout", "tonini")
    if depth_layout not in ("tonini", "diffusiongaze"):
        raise ValueError(f"depth_layout: expected tonini or diffusiongaze, found {depth_layout!r}")
    if config.depth_flag and depth_layout == "diffusiongaze":
        if name not in ("original", "diffusiongaze_depth"):
            raise ValueError(f"depth_flag with depth_layout: diffusiongaze selects the 'diffusiongaze_depth' backbone, "
                             f"but gaze_backbone is {name!r} (depth_layout: tonini adds a depth stream to others)")
        return "diffusiongaze_depth"
    if getattr(config, "attention_layout", False):
        if name not in ("original", "chong"):
            raise ValueError(f"attention_layout: true selects the 'chong' backbone, but gaze_backbone is {name!r}")
        return "chong"
    return name


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
