"""get_model(config): builds the GazeDiffusionModel (backbone, heatmap decoder, in/out head) from the project's options
(read by name with getattr)."""

import models.timm_backbone  # noqa: F401  (registers "timm"; timm itself is imported when one is built)
import models.gazelle  # noqa: F401  (registers "gazelle", Gaze-LLE's backbone)
from models.backbones import build_backbone, import_backbone_plugins
from models.decoders import decoder_spec
from models.gaze_diffusion import GazeDiffusionModel
from models.inout import InOutHead

MODEL_OPTIONS = (
    "list_resnet_scene_layers", "list_resnet_face_layers", "resnet_scene_inplanes", "resnet_face_inplanes",
    "input_size", "output_size", "unet_inout_channels", "unet_inplanes", "unet_residual",
    "list_unet_inplanes_multipliers", "list_unet_attention_levels", "unet_spatial_tf_heads",
    "unet_spatial_tf_layers", "unet_context_vector", "unet_dropout", "use_scale_shift_norm", "conv_resample",
    "resblock_updown", "adm_learn_sigma", "adm_attention_module", "head_flag", "depth_flag",
    "list_resnet_depth_layers", "resnet_depth_inplanes", "freeze_scene", "freeze_face", "concat_scene",
)


def get_model(config, init_backbone_weights: bool = True) -> GazeDiffusionModel:
    """Build the model. `config` is any object with the attributes in MODEL_OPTIONS (e.g. a SimpleNamespace).

    The modules of `backbone_plugins` are imported first, then the registered backbone `backbone_name` selects is
    built, and the registered heatmap decoder `heatmap_decoder` names (models/decoders.py; "diffusion", the UNet
    denoiser, when the option is absent, as in configurations stored before it existed). `init_backbone_weights:
    false` skips the backbone's starting weights (backbone_pretrained, backbone_weights): for building a model whose
    weights a checkpoint then fills, so neither the network nor the original weight file is needed.
    """
    missing = [name for name in MODEL_OPTIONS if not hasattr(config, name)]
    if missing:
        raise AttributeError(f"get_model: the configuration lacks the model options {missing}")
    source = getattr(config, "sources", {}).get("backbone_plugins", "")  # "<checkpoint> (stored)" when stored
    import_backbone_plugins(getattr(config, "backbone_plugins", None),
                            named_in=source[: -len(" (stored)")] if source.endswith(" (stored)") else None)
    backbone_config = config if init_backbone_weights else _Overridden(config, backbone_pretrained=False,
                                                                       backbone_weights=None)
    backbone = build_backbone(backbone_name(config), backbone_config)
    spec = decoder_spec(getattr(config, "heatmap_decoder", "diffusion"))
    network = spec.build(config, backbone)
    downsample = getattr(network, "downsample_factor", 1)  # the UNets'
    if config.output_size % downsample:
        raise ValueError(
            f"output_size {config.output_size} (heatmap side) must be divisible by {downsample}, the "
            f"downsampling of a {len(config.list_unet_inplanes_multipliers)}-level UNet "
            f"(list_unet_inplanes_multipliers={list(config.list_unet_inplanes_multipliers)})"
        )
    inout_head = None if spec.own_inout else InOutHead(backbone.feature_channels, backbone.feature_side ** 2)
    model = GazeDiffusionModel(backbone, network, inout_head,
                               spatial_size=config.output_size if config.concat_scene else None,
                               network_name=spec.module_name, decoder_kind=spec.kind)
    if config.freeze_scene:
        model.freeze("scene_backbone")
    if config.freeze_face:
        if getattr(backbone, "face_backbone", None) is None:
            raise ValueError("freeze_face: true but head_flag: false builds no face stream to freeze"
                             if backbone_name(config) in ("original", "original_depth_tokens") else
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
    """The registered gaze backbone `gaze_backbone` names ("original" when the option is absent, as in configurations
    stored before it existed). The original's layout flags (attention_layout, depth_layout) are translated into this
    name where they enter (engine.old_spellings), not here."""
    return getattr(config, "gaze_backbone", "original")


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
