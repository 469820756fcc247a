"""The peers' released weight files: read, identified by their keys and shapes, and loaded into the project's models
of them (models/gazelle.py, models/chong.py, models/dinov2.py).

- Gaze-LLE (fkryan/gazelle releases, torch.hub): `gazelle_dinov2_vit{b,l}14[_inout].pt` (and the hub's
  `gazelle_dinov2_vitb14_hub.pt`) hold the decoder only: every key of its model but `backbone.*` (a full state dict
  with `backbone.model.*` is read too). ViT-B vs ViT-L shows in `linear.weight`'s input width (768 / 1024), the in/out
  head in `inout_token.weight`.
- DINOv2, the encoder Gaze-LLE's files need: facebookresearch/dinov2's torch.hub checkpoint
  (`dinov2_vit{s,b,l}14_pretrain.pth`, with `mask_token`) or timm's `vit_{small,base,large}_patch14_dinov2.lvd142m`
  (`model.safetensors` or `pytorch_model.bin`): the same tensors under the same names.
- Chong et al. (ejcgt/attention-target-detection): `{'model': state_dict}`. `model_gazefollow.pt` and
  `model_demo.pt` hold the spatial model; `model_videoatttarget.pt` the spatio-temporal one (`convlstm_scene.*`,
  `bn_ds` in every ResNet block); `initial_weights_for_{spatial,temporal}_training.pt` are starting points for
  training (a part of a model's keys, or a whole spatial model).

Files are opened with `torch.load(weights_only=True)` (pretrained/files.py). A file of another kind, or one whose
tensors do not fit, is an error naming the file and what was found.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from pretrained.files import CheckpointError
from pretrained.loading import LoadReport, detect_scheme, load_checkpoint_state
from pretrained.renaming import SCHEMES, rename_keys

# Gaze-LLE's names -> models.gazelle.GazeLLE's.
GAZELLE_RULES = [
    (r"backbone\.model\.", "gaze_backbone.scene_backbone."),
    (r"linear\.", "gaze_backbone.scene_projection."),
    (r"(pos_embed|head_token\.)", r"gaze_backbone.\1"),
    (r"(inout_token|transformer|heatmap_head|inout_head)\.", r"heatmap_decoder.\1."),
]
# DINOv2's names are the encoder's own (models/dinov2.py); the hub's mask token (masked-image training) is unused.
DINOV2_RULES = [(r"mask_token$", None), (r"(cls_token$|pos_embed$|patch_embed\.proj\.|blocks\.\d+\.|norm\.)", r"\1")]
# Chong et al.'s flat names -> models.chong's: the `chong` scheme (backbone, attention, encoder, in/out head) plus
# their heatmap decoder and ConvLSTM, which that scheme drops (the diffusion models replace them).
CHONG_RULES = ([(r"(deconv\d|deconv_bn\d|conv4)\.", r"heatmap_decoder.\1."), (r"convlstm_scene\.", "convlstm.")]
               + SCHEMES["chong"])
CHONG_SIGNATURE = re.compile(r"(conv1|bn1|layer\d+)_(scene|face)\.|compress_(conv|bn)\d|convlstm_scene\.|fc_inout\."
                             r"|deconv(_bn)?\d\.|conv4\.")
GAZELLE_KEYS = ("linear.weight", "head_token.weight", "heatmap_head.0.weight")
DINOV2_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
# Widths of the DINOv2 encoders a Gaze-LLE decoder can sit on (its `linear` input).
DINOV2_WIDTHS = {384: "vits14", 768: "vitb14", 1024: "vitl14"}
TIMM_NAMES = {"vit_small_patch14_dinov2": "vits14", "vit_base_patch14_dinov2": "vitb14",
              "vit_large_patch14_dinov2": "vitl14"}
# Entries a Chong file may lack: a buffer this project derives (the conditioning's positional encoding, unused by
# Chong's own decoder) and BatchNorm counters (absent from files saved by torch < 0.4.1; unused in evaluation).
CHONG_DERIVED = re.compile(r"gaze_backbone\.positional_encoding\.inv_freq$|.*num_batches_tracked$")


@dataclass
class PeerFile:
    """A peer's weight file: `kind` is "gazelle", "dinov2", "chong_spatial" or "chong_spatiotemporal"; `complete`
    tells whether it holds a whole model (False: starting weights for training); `details` the architecture read
    from its shapes."""

    path: str
    kind: str
    name: str  # what the file is, in the peer's words (e.g. gazelle_dinov2_vitb14_inout, dinov2_vitl14 (timm layout))
    state: dict[str, torch.Tensor] = field(repr=False)
    details: dict = field(default_factory=dict)
    complete: bool = True


def read_peer_file(path: str | os.PathLike) -> PeerFile:
    """Read and identify a Gaze-LLE, DINOv2 or Chong et al. file by its keys and shapes."""
    path = str(path)
    state = load_checkpoint_state(path)
    if all(key in state for key in GAZELLE_KEYS):
        return _gazelle_file(path, state)
    if all(key in state for key in DINOV2_KEYS):
        return _dinov2_file(path, state)
    if state and all(CHONG_SIGNATURE.match(key) or key.startswith("attn.") for key in state):
        return _chong_file(path, state)
    raise CheckpointError(f"{path}: not a Gaze-LLE, DINOv2 or Chong et al. weight file: {_what_it_is(state)}")


def _what_it_is(state: dict) -> str:
    keys = list(state)
    try:
        scheme = detect_scheme(state)
        found = (f"its keys are in the {scheme!r} naming (a checkpoint for this project's diffusion models: "
                 "--init_weights / --eval_weights)")
    except ValueError:
        found = "its keys match no known layout"
    return (f"{found}; {len(keys)} keys, the first {keys[:6]}. Gaze-LLE's files have {list(GAZELLE_KEYS)}, DINOv2's "
            f"{list(DINOV2_KEYS)}, Chong et al.'s names such as conv1_scene.weight, compress_conv1.weight, "
            "deconv1.weight")


def _gazelle_file(path: str, state: dict) -> PeerFile:
    dim, width = state["linear.weight"].shape[:2]
    layers = sorted({int(m.group(1)) for key in state if (m := re.match(r"transformer\.(\d+)\.", key))})
    if layers != list(range(len(layers))) or not layers:
        raise CheckpointError(f"{path}: a Gaze-LLE file without transformer blocks 0..n-1 (found {layers})")
    architecture = DINOV2_WIDTHS.get(int(width))
    if architecture is None:
        raise CheckpointError(f"{path}: a Gaze-LLE decoder for a {width}-wide encoder (linear.weight "
                              f"{list(state['linear.weight'].shape)}); DINOv2 ViT-S/B/L/14 are {sorted(DINOV2_WIDTHS)}")
    inout = "inout_token.weight" in state
    side = int(state["pos_embed"].shape[-1]) if "pos_embed" in state else None
    with_backbone = any(key.startswith("backbone.") for key in state)
    details = {"dim": int(dim), "num_layers": len(layers), "inout": inout, "architecture": architecture,
               "side": side, "with_backbone": with_backbone}
    return PeerFile(path, "gazelle", f"gazelle_dinov2_{architecture}" + ("_inout" if inout else ""), state, details)


def _dinov2_file(path: str, state: dict) -> PeerFile:
    if "register_tokens" in state or "reg_token" in state:
        raise CheckpointError(f"{path}: a DINOv2 model with register tokens (dinov2_*_reg / *_reg4_dinov2); "
                              "Gaze-LLE uses the models without registers (dinov2_vitb14_pretrain.pth, "
                              "vit_base_patch14_dinov2.lvd142m)")
    if any(".mlp.w12." in key for key in state):
        raise CheckpointError(f"{path}: a DINOv2 model with a SwiGLU MLP (ViT-g/14), which Gaze-LLE does not use")
    width = int(state["cls_token"].shape[-1])
    depth = len({int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})
    from models.dinov2 import architecture_of, grid_of

    architecture = architecture_of(width, depth)
    if architecture is None:
        raise CheckpointError(f"{path}: a DINOv2-layout ViT of width {width} and {depth} blocks, none of ViT-S/B/L/14")
    layout = "hub" if "mask_token" in state else "timm"
    grid = grid_of(state["pos_embed"].shape)
    return PeerFile(path, "dinov2", f"dinov2_{architecture} ({layout} layout)", state,
                    {"architecture": architecture, "layout": layout, "grid": grid})


def _chong_file(path: str, state: dict) -> PeerFile:
    from models.chong import ChongSpatial, ChongSpatioTemporal

    temporal = any(key.startswith("convlstm_scene.") or ".bn_ds." in key for key in state)
    layers = len({m.group(1) for key in state if (m := re.match(r"convlstm_scene\.weight_ih_l(\d+)$", key))})
    if any(key.endswith("_reverse") for key in state):
        raise CheckpointError(f"{path}: a Chong et al. model with a bidirectional ConvLSTM, which their released "
                              "models do not have")
    with torch.device("meta"):  # the key names and shapes only
        model = ChongSpatioTemporal(layers or 2) if temporal else ChongSpatial()
    expected = model.state_dict()
    renamed, dropped, unmatched = rename_keys(state, CHONG_RULES)
    unexpected = [new for new in renamed.values() if new not in expected] + unmatched + dropped
    if unexpected:
        raise CheckpointError(f"{path}: Chong et al.'s naming, but keys that their "
                              f"{'spatio-temporal' if temporal else 'spatial'} model does not have: {unexpected[:8]}")
    missing = [key for key in expected if key not in renamed.values() and not CHONG_DERIVED.match(key)]
    kind = "chong_spatiotemporal" if temporal else "chong_spatial"
    name = ("Chong et al.'s spatio-temporal model (model_videoatttarget.pt)" if temporal
            else "Chong et al.'s spatial model (model_gazefollow.pt / model_demo.pt)")
    if missing:
        name = f"starting weights for Chong et al.'s {'spatio-temporal' if temporal else 'spatial'} model " \
               f"({len(renamed)} of its {len(expected)} tensors)"
    return PeerFile(path, kind, name, state, {"num_lstm_layers": layers or None, "missing": missing},
                    complete=not missing)


def load_exact(module: nn.Module, state: dict, rules, source: str, needed=None, assign: bool = False,
               partial: bool = False) -> LoadReport:
    """Rename `state` by `rules` and load it into `module`. Every renamed key must exist in the module with the same
    shape; `needed(key)` (default: every key) says which module keys the file must fill, unless `partial` (starting
    weights). With `assign`, the file's tensors become the parameters (no copy: for a module built on the meta
    device). Raises CheckpointError listing what does not fit; returns the report."""
    renamed, dropped, unmatched = rename_keys(state, rules)
    target = module.state_dict()
    report = LoadReport(scheme="peer", source=source, dropped=dropped, unmatched=unmatched)
    converted = {new: state[old] for old, new in renamed.items()}
    for key, tensor in converted.items():
        if key not in target:
            report.unexpected.append(key)
        elif tensor.shape != target[key].shape:
            report.shape_mismatched.append((key, tuple(tensor.shape), tuple(target[key].shape)))
        else:
            report.loaded.append(key)
    report.missing = [key for key in target if key not in converted and (needed is None or needed(key))]
    original = {new: old for old, new in renamed.items()}
    problems = [f"{title} ({len(keys)}): {keys[:6]}" for title, keys in (
        ("model tensors the file lacks", [] if partial else report.missing),
        ("file tensors the model does not have", [original[key] for key in report.unexpected] + report.unmatched),
    ) if keys] + [f"{original[key]}: file {list(found)}, model {list(expected)}"
                  for key, found, expected in report.shape_mismatched]
    if problems:
        raise CheckpointError(f"{source}: does not fit {type(module).__name__}; nothing loaded: " + "; ".join(problems))
    module.load_state_dict({key: converted[key] for key in report.loaded}, strict=False, assign=assign)
    return report


def dinov2_architecture_name(name: str) -> str:
    """'vitb14' from 'dinov2_vitb14', 'vitb14' or timm's 'vit_base_patch14_dinov2[.lvd142m]' (ViT-S/B/L/14)."""
    from models.dinov2 import ARCHITECTURES

    base = str(name).split(".")[0]
    architecture = TIMM_NAMES.get(base, base.removeprefix("dinov2_"))
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{name!r} names no DINOv2 encoder without registers; use one of "
                         f"{[f'dinov2_{a}' for a in ARCHITECTURES] + sorted(TIMM_NAMES)}")
    return architecture


def load_dinov2_encoder(encoder, weights: str | os.PathLike | PeerFile, assign: bool = False) -> LoadReport:
    """Fill a models.dinov2.DinoV2Encoder from a DINOv2 file (hub or timm layout); its architecture and position
    table must be the encoder's."""
    peer = weights if isinstance(weights, PeerFile) else read_peer_file(weights)
    if peer.kind != "dinov2":
        raise CheckpointError(f"{peer.path}: expected DINOv2 encoder weights (dinov2_vitb14_pretrain.pth or timm's "
                              f"vit_base_patch14_dinov2.lvd142m), found {peer.name}")
    if (peer.details["architecture"], peer.details["grid"]) != (encoder.architecture, encoder.pretrain_grid):
        raise CheckpointError(f"{peer.path}: {peer.name} with a {peer.details['grid']} x {peer.details['grid']} "
                              f"position table, but the encoder is dinov2_{encoder.architecture} with "
                              f"{encoder.pretrain_grid} x {encoder.pretrain_grid}")
    return load_exact(encoder, peer.state, DINOV2_RULES, peer.path, assign=assign)


def build_gazelle(weights: str | os.PathLike, backbone_weights: str | os.PathLike | None = None, encoder=None):
    """The Gaze-LLE model of a released decoder file, on DINOv2 weights from `backbone_weights` (either layout) or
    an already built `encoder` (models.dinov2.DinoV2Encoder, shared: e.g. both decoders of one ViT), in eval mode.
    The variant (ViT-B/L, in/out head) is read from the file; the encoder's architecture must be the decoder's."""
    from models.dinov2 import DinoV2Encoder, grid_of
    from models.gazelle import GazeLLE, GazeLLEBackbone, GazeLLEDecoder

    peer = read_peer_file(weights)
    if peer.kind != "gazelle":
        hint = "; pass it as the backbone weights" if peer.kind == "dinov2" else ""
        raise CheckpointError(f"{peer.path}: expected a Gaze-LLE release file (gazelle_dinov2_vitb14[_inout].pt, ...), "
                              f"found {peer.name}{hint}")
    details, architecture = peer.details, peer.details["architecture"]
    backbone_file = None
    if encoder is None:
        if details["with_backbone"]:
            backbone_file = PeerFile(peer.path, "dinov2", f"dinov2_{architecture}", {
                key[len("backbone.model."):]: value for key, value in peer.state.items()
                if key.startswith("backbone.model.")}, {"architecture": architecture})
            backbone_file.details["grid"] = grid_of(backbone_file.state["pos_embed"].shape)
        elif backbone_weights is None:
            raise CheckpointError(f"{peer.path}: {peer.name} holds the decoder only; give the DINOv2 weights "
                                  f"(dinov2_{architecture}_pretrain.pth, or timm's {_timm_name(architecture)})")
        else:
            backbone_file = read_peer_file(backbone_weights)
            if backbone_file.kind != "dinov2":
                raise CheckpointError(f"{backbone_file.path}: expected DINOv2 weights for {peer.name}, found "
                                      f"{backbone_file.name}")
        if backbone_file.details["architecture"] != architecture:
            raise CheckpointError(f"{backbone_file.path}: {backbone_file.name}, but {peer.path} ({peer.name}) needs "
                                  f"dinov2_{architecture}")
        side = details["side"] or 32
        with torch.device("meta"):  # filled by assignment from the file: no initialisation of 86-300 M weights
            encoder = DinoV2Encoder(architecture, side * 14, pretrain_grid=backbone_file.details["grid"])
        load_dinov2_encoder(encoder, backbone_file, assign=True)
    elif encoder.architecture != architecture:
        raise CheckpointError(f"{peer.path}: {peer.name} needs dinov2_{architecture}, the encoder given is "
                              f"dinov2_{encoder.architecture}")
    backbone = GazeLLEBackbone(dim=details["dim"], encoder=encoder)
    decoder = GazeLLEDecoder(details["dim"], details["num_layers"], inout=details["inout"])
    model = GazeLLE(backbone, decoder, variant=peer.name)
    state = {key: value for key, value in peer.state.items() if not key.startswith("backbone.")}
    load_exact(model, state, GAZELLE_RULES, peer.path, needed=lambda key: not key.startswith("gaze_backbone.scene_"
                                                                                             "backbone."))
    return model.eval()


def _timm_name(architecture: str) -> str:
    return next(name for name, value in TIMM_NAMES.items() if value == architecture) + ".lvd142m"


def build_chong(weights: str | os.PathLike):
    """Chong et al.'s spatial or spatio-temporal model (read from the file's keys) with the file's weights, in eval
    mode. Starting weights (initial_weights_for_*_training.pt holding part of a model) are refused: they are for
    `load_chong_starting_weights`."""
    from models.chong import ChongSpatial, ChongSpatioTemporal

    peer = read_peer_file(weights)
    if not peer.kind.startswith("chong"):
        raise CheckpointError(f"{peer.path}: expected a Chong et al. model (model_gazefollow.pt, model_demo.pt, "
                              f"model_videoatttarget.pt), found {peer.name}")
    if not peer.complete:
        raise CheckpointError(f"{peer.path}: {peer.name}, not a trained model (it lacks "
                              f"{len(peer.details['missing'])} tensors, e.g. {peer.details['missing'][:4]}): use it "
                              "to start training (models are model_gazefollow.pt, model_demo.pt, "
                              "model_videoatttarget.pt)")
    temporal = peer.kind == "chong_spatiotemporal"
    model = ChongSpatioTemporal(peer.details["num_lstm_layers"]) if temporal else ChongSpatial()
    load_exact(model, peer.state, CHONG_RULES, peer.path, needed=lambda key: not CHONG_DERIVED.match(key))
    return model.eval()


def load_chong_starting_weights(model: nn.Module, weights: str | os.PathLike) -> LoadReport:
    """Initialise a models.chong model from any Chong et al. file of its kind or a smaller one (Chong's training
    scripts' `--init_weights`: e.g. initial_weights_for_temporal_training.pt, or a spatial model, into the
    spatio-temporal model); what the file lacks keeps the model's initialisation and is listed in the report."""
    peer = read_peer_file(weights)
    if not peer.kind.startswith("chong"):
        raise CheckpointError(f"{peer.path}: expected Chong et al. weights, found {peer.name}")
    report = load_exact(model, peer.state, CHONG_RULES, peer.path, partial=True)
    print(report.summary().replace("init weights from", "Chong et al. starting weights from", 1))
    return report
