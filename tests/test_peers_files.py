"""The peers' weight files: each kind is identified from its keys and shapes, and a file of another kind, or one that
does not fit, is an error naming the file and what was found. The registered `gazelle` gaze backbone.

Files of full-size models are written with stride-0 tensors (one stored value each), so they cost kilobytes: only
names and shapes matter here; the numbers are the parity tests' (test_peers_gazelle.py, test_peers_chong.py).
"""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.backbones import BACKBONES, build_backbone
from models.chong import ChongSpatioTemporal
from models.dinov2 import DinoV2Encoder
from models.gazelle import GazeLLEBackbone
from pretrained.files import CheckpointError
from pretrained.peer_files import build_chong, build_gazelle, load_chong_starting_weights, read_peer_file
from tests import peers_recipe as recipe

FIXTURES = Path(__file__).parent / "fixtures" / "peers"


@pytest.fixture(scope="module")
def layouts():
    gazelle = torch.load(FIXTURES / "gazelle.pt", weights_only=True)["layouts"]
    chong = torch.load(FIXTURES / "chong.pt", weights_only=True)["layouts"]
    return {**gazelle, **{f"chong_{kind}": layout for kind, layout in chong.items()}}


def shaped(layout, drop=(), extra=None) -> dict[str, torch.Tensor]:
    """Zeros of the layout's shapes (stride 0: one stored element each)."""
    state = {key: torch.zeros(1).expand(*shape) if shape else torch.zeros((), dtype=torch.int64)
             for key, shape in layout if key not in drop}
    state.update(extra or {})
    return state


def write(path: Path, state, container=None) -> Path:
    torch.save({container: state} if container else state, path)
    return path


def test_each_released_file_is_identified(layouts, tmp_path):
    for variant in ("gazelle_dinov2_vitb14", "gazelle_dinov2_vitb14_inout", "gazelle_dinov2_vitl14",
                    "gazelle_dinov2_vitl14_inout"):
        peer = read_peer_file(write(tmp_path / f"{variant}.pt", shaped(layouts[variant])))
        assert (peer.kind, peer.name, peer.details["num_layers"]) == ("gazelle", variant, 3)
    for architecture in ("vitb14", "vitl14"):
        layout = layouts[f"dinov2_{architecture}"]
        hub = read_peer_file(write(tmp_path / "hub.pth", shaped(layout)))
        timm = read_peer_file(write(tmp_path / "pytorch_model.bin", shaped(layout, drop=("mask_token",))))
        assert hub.name == f"dinov2_{architecture} (hub layout)" and timm.name == f"dinov2_{architecture} (timm layout)"
        assert hub.details["grid"] == 37
    spatial = read_peer_file(write(tmp_path / "model_demo.pt", shaped(layouts["chong_spatial"]), "model"))
    temporal = read_peer_file(write(tmp_path / "vat.pt", shaped(layouts["chong_spatiotemporal"]), "model"))
    assert (spatial.kind, spatial.complete) == ("chong_spatial", True)
    assert (temporal.kind, temporal.complete, temporal.details["num_lstm_layers"]) == ("chong_spatiotemporal", True, 2)
    resnets_only = [(key, shape) for key, shape in layouts["chong_spatial"] if "_scene." in key or "_face." in key]
    start = read_peer_file(write(tmp_path / "initial_weights_for_spatial_training.pt", shaped(resnets_only), "model"))
    assert (start.kind, start.complete) == ("chong_spatial", False) and "starting weights" in start.name


def test_a_file_of_another_kind_is_a_clear_error(layouts, tmp_path):
    chong = write(tmp_path / "model_gazefollow.pt", shaped(layouts["chong_spatial"]), "model")
    dinov2_b = write(tmp_path / "dinov2_vitb14_pretrain.pth", shaped(layouts["dinov2_vitb14"]))
    vitl = write(tmp_path / "gazelle_dinov2_vitl14.pt", shaped(layouts["gazelle_dinov2_vitl14"]))
    vitb = write(tmp_path / "gazelle_dinov2_vitb14.pt", shaped(layouts["gazelle_dinov2_vitb14"]))
    with pytest.raises(CheckpointError, match=r"model_gazefollow.pt: expected a Gaze-LLE release file .* found "
                                              r"Chong et al.'s spatial model"):
        build_gazelle(chong, dinov2_b)
    with pytest.raises(CheckpointError, match="found dinov2_vitb14 \\(hub layout\\); pass it as the backbone weights"):
        build_gazelle(dinov2_b)
    with pytest.raises(CheckpointError, match=r"dinov2_vitb14 \(hub layout\), but .*gazelle_dinov2_vitl14.pt "
                                              r"\(gazelle_dinov2_vitl14\) needs dinov2_vitl14"):
        build_gazelle(vitl, dinov2_b)
    with pytest.raises(CheckpointError, match="holds the decoder only; give the DINOv2 weights"):
        build_gazelle(vitb)
    with pytest.raises(CheckpointError, match="expected DINOv2 weights for gazelle_dinov2_vitb14, found gazelle_"):
        build_gazelle(vitb, vitl)
    with pytest.raises(CheckpointError, match="expected a Chong et al. model .* found gazelle_dinov2_vitb14"):
        build_chong(vitb)
    start = write(tmp_path / "start.pt", shaped(layouts["chong_spatial"][:30]), "model")
    with pytest.raises(CheckpointError, match="starting weights .*not a trained model.*use it to start training"):
        build_chong(start)
    tonini = write(tmp_path / "init_weights.pt", {"scene_backbone.conv1.weight": torch.zeros(2)}, "model")
    with pytest.raises(CheckpointError, match="init_weights.pt: not a Gaze-LLE, DINOv2 or Chong .* 'tonini' naming"):
        read_peer_file(tonini)
    with pytest.raises(CheckpointError, match="match no known layout; 1 keys, the first \\['foo'\\]"):
        read_peer_file(write(tmp_path / "other.pt", {"foo": torch.zeros(1)}))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_peer_file(tmp_path / "missing.pt")


def test_variants_the_decoders_cannot_use_are_refused(layouts, tmp_path):
    registers = shaped(layouts["dinov2_vitb14"], extra={"register_tokens": torch.zeros(1, 4, 768)})
    with pytest.raises(CheckpointError, match="register tokens"):
        read_peer_file(write(tmp_path / "dinov2_vitb14_reg4_pretrain.pth", registers))
    swiglu = shaped(layouts["dinov2_vitb14"], extra={"blocks.0.mlp.w12.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match="SwiGLU"):
        read_peer_file(write(tmp_path / "g.pth", swiglu))
    small = shaped(layouts["gazelle_dinov2_vitb14"], extra={"linear.weight": torch.zeros(256, 512, 1, 1)})
    with pytest.raises(CheckpointError, match="a Gaze-LLE decoder for a 512-wide encoder"):
        read_peer_file(write(tmp_path / "odd.pt", small))
    layer9 = shaped(layouts["chong_spatial"], extra={"layer9_scene.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="keys that their spatial model does not have.*layer9"):
        read_peer_file(write(tmp_path / "layer9.pt", layer9, "model"))


def test_a_release_file_that_does_not_fit_loads_nothing(layouts, tmp_path):
    """A missing tensor or one of another shape: an error listing it, before the model is used."""
    with torch.device("meta"):  # never filled: the decoder's file fails first
        dinov2 = DinoV2Encoder("vitb14", 448)
    torn = shaped(layouts["gazelle_dinov2_vitb14"], drop=("transformer.2.mlp.fc2.bias",))
    with pytest.raises(CheckpointError, match=r"torn.pt: does not fit GazeLLE; nothing loaded: model tensors the file "
                                              r"lacks \(1\): \['heatmap_decoder.transformer.2.mlp.fc2.bias'\]"):
        build_gazelle(write(tmp_path / "torn.pt", torn), encoder=dinov2)
    wide = shaped(layouts["gazelle_dinov2_vitb14"], extra={"head_token.weight": torch.zeros(1, 128)})
    with pytest.raises(CheckpointError, match=r"nothing loaded: head_token.weight: file \[1, 128\], model \[1, 256\]"):
        build_gazelle(write(tmp_path / "wide.pt", wide), encoder=dinov2)
    temporal = ChongSpatioTemporal()
    before = temporal.convlstm.weight_ih_l0.clone()
    report = load_chong_starting_weights(temporal, write(tmp_path / "s.pt", shaped(layouts["chong_spatial"][:40]),
                                                         "model"))
    assert len(report.loaded) == 40 and torch.equal(temporal.convlstm.weight_ih_l0, before)


def test_building_a_model_registers_gazelle_in_a_fresh_process():
    """main.py, predict.py and evaluation build models through models.build: the name must be known there without
    importing models.gazelle first."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    code = "from models.build import get_model; from models.backbones import BACKBONES; print(sorted(BACKBONES))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "'gazelle'" in result.stdout, result.stderr[-2000:]


def test_gazelle_is_a_registered_gaze_backbone(tmp_path):
    """Built from the options like every backbone (here a ViT-S/14 at 56 px: a 4 x 4 token grid), with DINOv2 weights
    from `backbone_weights`; one image serves all the people of a frame."""
    assert BACKBONES["gazelle"] is GazeLLEBackbone
    with torch.device("meta"):
        layout = [(key, tuple(value.shape)) for key, value in DinoV2Encoder("vits14", 56).state_dict().items()]
    weights = write(tmp_path / "dinov2_vits14_pretrain.pth",
                    recipe.state_dict([*layout, ("mask_token", (1, 384))]))
    config = SimpleNamespace(timm_model="vit_small_patch14_dinov2", input_size=56, unet_context_vector=32,
                             backbone_weights=str(weights))
    backbone = build_backbone("gazelle", config).eval()
    assert backbone.person_independent_scene and (backbone.context_dim, backbone.feature_side) == (32, 4)
    assert torch.equal(backbone.scene_backbone.blocks[0].attn.qkv.weight,
                       recipe.weight("blocks.0.attn.qkv.weight", (1152, 384)))
    image = recipe.image_batch(5, 1, 56)
    maps = torch.zeros(3, 4, 4)
    maps[0, :2, :2], maps[1, 2:, 1:] = 1, 1
    with torch.no_grad():
        shared = backbone(image, maps)
        separate = backbone(image.expand(3, -1, -1, -1), maps[:, None])
    assert shared["conditioning"].shape == (3, 16, 32) and shared["scene_face_feat"].shape == (3, 32, 4, 4)
    assert torch.allclose(shared["conditioning"], separate["conditioning"], atol=1e-6)
    assert not torch.allclose(shared["conditioning"][0], shared["conditioning"][1])
    with torch.no_grad():  # the project's pixel mask at the input size: sampled at the cell centres
        from_pixels = backbone(image, maps.repeat_interleave(14, dim=1).repeat_interleave(14, dim=2)[:, None])
    assert torch.equal(from_pixels["conditioning"], shared["conditioning"])
    with pytest.raises(ValueError, match=r"token grid or be a 56-pixel head mask .*got \[3, 1, 28, 28\]"):
        backbone(image, torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="set timm_model to its DINOv2 encoder"):
        build_backbone("gazelle", SimpleNamespace(**{**vars(config), "timm_model": None}))
    with pytest.raises(ValueError, match="names no DINOv2 encoder"):
        build_backbone("gazelle", SimpleNamespace(**{**vars(config), "timm_model": "resnet50"}))
    with pytest.raises(ValueError, match=r"does not take backbone_pretrained .*; face_stream"):
        build_backbone("gazelle", SimpleNamespace(**{**vars(config), "backbone_pretrained": True, "face_stream": True}))


def test_the_projects_pixel_head_mask_becomes_gazelles_map_but_near_a_cell_middle():
    """What the training loop passes (datasets.transforms.head_mask at 448 px), sampled at the cell centres, is
    Gaze-LLE's rounded map unless a left / top edge lies less than one pixel past a cell's middle."""
    import numpy as np

    from datasets.peer_transforms import gazelle_head_maps
    from datasets.transforms import head_mask

    with torch.device("meta"):
        encoder = DinoV2Encoder("vits14", 448)
    backbone = GazeLLEBackbone(dim=32, encoder=encoder)
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(300):
        x_min, y_min = rng.uniform(0, 0.8, 2)
        box = (x_min, y_min, x_min + rng.uniform(0.02, 0.2), y_min + rng.uniform(0.02, 0.2))
        in_band = any(0.5 <= (edge * 32) % 1 < 0.5 + 1 / 14 for edge in box[:2])
        same = torch.equal(backbone._grid_map(head_mask(box, 448)[None].float()), gazelle_head_maps([box]))
        assert same or in_band, box
        compared += not in_band
    assert compared > 200
    near = (8.52 / 32, 0.1, 0.5, 0.5)  # left edge 0.02 cell (0.3 px) past the middle of cell 8
    assert not torch.equal(backbone._grid_map(head_mask(near, 448)[None].float()), gazelle_head_maps([near]))
