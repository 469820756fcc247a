"""gaze_backbone timm: a DINOv2 ViT (random initialisation) trains, resumes and evaluates on the synthetic data, and
--eval_weights needs no backbone option; patch/prefix tokens, the head prompt, the mask channel, local weight files,
freezing and the option checks."""
import json

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, load_config, parse_command_line
from engine.train import run
from models.build import get_model
from models.timm_backbone import TimmEncoder, TimmGazeBackbone, load_encoder_weights
from tests.tiny_runs import make_tiny_dataset

VIT = "vit_small_patch14_reg4_dinov2"
# The tiny UNet of the end-to-end test with a 56-pixel input (4 x 4 patches of 14 pixels).
TIMM_TINY = [
    "--device", "cpu", "--no_wandb", "--num_workers", "0", "--seed", "3", "--input_size", "56", "--output_size", "32",
    "--batch_size", "4", "--unet_context_vector", "128", "--unet_inplanes", "8",
    "--list_unet_inplanes_multipliers", "1", "2", "--list_unet_attention_levels", "2", "--train_time_steps", "50",
    "--sample_time_steps", "5", "--print_every", "1", "--evaluate_every", "100", "--no_save",
]
BACKBONE = ["--gaze_backbone", "timm", "--timm_model", VIT, "--freeze_scene"]


def timm_config(**overrides):
    values = dict(device="cpu", gaze_backbone="timm", timm_model=VIT, input_size=56, output_size=32,
                  unet_context_vector=64, list_unet_inplanes_multipliers=[1, 2], list_unet_attention_levels=[2])
    values.update(overrides)
    return load_config([], values)


def inputs(batch=2, size=56):
    torch.manual_seed(0)
    head_mask = torch.zeros(batch, 1, size, size)
    head_mask[:, :, :14, 14:28] = 1.0  # exactly patch (row 0, column 1)
    return torch.randn(batch, 3, size, size), head_mask, torch.randn(batch, 3, size, size)


def test_dinov2_trains_resumes_and_evaluates_without_backbone_options(tmp_path, capsys):
    dataset = make_tiny_dataset(tmp_path / "data")

    def config(*flags):
        return parse_command_line([*TIMM_TINY, "--source_dataset_dir", str(dataset), "--output_dir",
                                   str(tmp_path / "runs"), "--tag", "dino", *flags])[0]

    run(config(*BACKBONE, "--epochs", "1"))
    run(config("--epochs", "2"))  # resuming needs no backbone option either
    assert "resuming" in capsys.readouterr().out
    checkpoint = load_checkpoint(tmp_path / "runs" / "dino" / "last.pt")
    assert checkpoint["epoch"] == 2
    assert checkpoint["config"]["gaze_backbone"] == "timm" and checkpoint["config"]["timm_model"] == VIT
    assert any(key.startswith("gaze_backbone.scene_backbone.model.blocks.") for key in checkpoint["model"])
    trained = json.loads((tmp_path / "runs" / "dino" / "metrics.json").read_text())

    evaluated = run(config("--eval_weights", str(tmp_path / "runs" / "dino" / "last.pt"), "--tag", "eval"))
    for key in ("auc", "min_l2", "avg_l2"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_vit_patch_tokens_and_prefix_tokens():
    encoder = TimmEncoder(VIT, 56)
    assert (encoder.num_prefix_tokens, encoder.side, encoder.channels) == (5, 4, 384)  # class + 4 registers
    image = torch.randn(2, 3, 56, 56)
    scene_map, prefix = encoder.eval()(image)
    tokens = encoder.model.forward_features(image)
    torch.testing.assert_close(prefix, tokens[:, :5])
    torch.testing.assert_close(scene_map[:, :, 1, 2], tokens[:, 5 + 1 * 4 + 2])  # row-major patch grid
    dropped = get_model(timm_config()).gaze_backbone
    kept = get_model(timm_config(timm_prefix_tokens="keep")).gaze_backbone
    assert dropped(*inputs())["conditioning"].shape == (2, 16, 64)
    assert kept(*inputs())["conditioning"].shape == (2, 16 + 5, 64)


def test_head_prompt_is_added_to_the_cells_inside_the_head_box():
    backbone = get_model(timm_config()).gaze_backbone.eval()
    image, head_mask, face = inputs()
    with_head = backbone(image, head_mask, face)["scene_face_feat"]
    without = backbone(image, torch.zeros_like(head_mask), face)["scene_face_feat"]
    difference = with_head - without  # [B, C, 4, 4]: the prompt in cell (0, 1) only
    torch.testing.assert_close(difference[:, :, 0, 1], backbone.head_prompt.detach().expand(2, -1))
    difference[:, :, 0, 1] = 0
    assert difference.abs().max() < 1e-6
    half = head_mask.clone()
    half[:, :, :, 21:] = 0  # half of that patch: half the prompt (a small head still marks its cell)
    torch.testing.assert_close(backbone(image, half, face)["scene_face_feat"][:, :, 0, 1] - without[:, :, 0, 1],
                               0.5 * backbone.head_prompt.detach().expand(2, -1))


def test_convolutional_model_with_the_mask_channel_and_a_face_stream():
    config = timm_config(timm_model="resnet18", input_size=64, head_position="mask_channel", face_stream=True)
    model = get_model(config)
    backbone = model.gaze_backbone
    conv1 = backbone.scene_backbone.model.conv1
    assert conv1.in_channels == 4 and torch.all(conv1.weight[:, 3] == 0)  # the mask starts as a no-op
    image, head_mask, face = inputs(size=64)
    features = model.encode(image, head_mask, face)
    assert features["conditioning"].shape == (2, 2 * 2 * 2, 64)  # scene + face cells of 2 x 2 maps
    assert features["scene_face_feat"].shape == (2, 128, 2, 2) and backbone.feature_channels == 128
    model.inout_logit(features["scene_face_feat"]).sum().backward()
    assert conv1.weight.grad[:, 3].abs().sum() > 0  # and learns


def test_freezing_timm_streams():
    model = get_model(timm_config(face_stream=True, freeze_scene=True, freeze_face=True))
    model.train()
    backbone = model.gaze_backbone
    for stream in (backbone.scene_backbone, backbone.face_backbone):
        assert not stream.training and not any(p.requires_grad for p in stream.parameters())
    assert backbone.scene_projection.weight.requires_grad and backbone.head_prompt.requires_grad
    unet, rest = model.parameter_groups()
    assert {id(p) for p in rest}.isdisjoint(id(p) for p in backbone.scene_backbone.parameters())
    with pytest.raises(ValueError, match="face_stream: true adds one"):
        get_model(timm_config(freeze_face=True))


def test_backbone_weights_file_is_loaded_with_a_report(tmp_path, capsys):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model(VIT, img_size=70, num_classes=0)  # another input size: 5 x 5 position embeddings
    state = {key: value.contiguous() for key, value in source.state_dict().items()}
    state["head.extra.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "dino.safetensors")
    model = get_model(timm_config(backbone_weights=str(tmp_path / "dino.safetensors")))
    encoder = model.gaze_backbone.scene_backbone.model
    torch.testing.assert_close(encoder.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert encoder.pos_embed.shape[1] == 16  # resampled by timm's checkpoint filter to 4 x 4
    report = model.gaze_backbone.scene_backbone.load_report
    assert report.unexpected == ["head.extra.weight"] and not report.missing
    assert "unexpected (not in the model): 1 keys" in capsys.readouterr().out
    without = get_model(timm_config(backbone_weights=str(tmp_path / "dino.safetensors")), init_backbone_weights=False)
    assert not torch.equal(without.gaze_backbone.scene_backbone.model.blocks[0].attn.qkv.weight,
                           source.blocks[0].attn.qkv.weight)

    torch.save({"state_dict": timm.create_model("resnet18", num_classes=0).state_dict()}, tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not fit"):
        load_encoder_weights(encoder, tmp_path / "r18.pth")


def test_backbone_pretrained_asks_timm_for_its_weights(monkeypatch):
    import timm

    calls = []
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **kwargs: calls.append(kwargs) or create(
        name, **{**kwargs, "pretrained": False}))
    TimmGazeBackbone.from_config(timm_config(backbone_pretrained=True))
    assert calls and all(call["pretrained"] for call in calls)
    calls.clear()
    get_model(timm_config(backbone_pretrained=True), init_backbone_weights=False)
    assert calls and not any(call["pretrained"] for call in calls)


@pytest.mark.parametrize("overrides, message", [
    (dict(gaze_backbone="original", timm_model=VIT), "configures gaze_backbone timm"),
    (dict(list_resnet_scene_layers=[1, 1]), "configure the ResNet backbones"),
    (dict(timm_model=None), "set 'timm_model'"),
    (dict(head_position="mask_channel", freeze_scene=True), "never see the head"),
    (dict(backbone_pretrained=True, backbone_weights="x.pth"), "choose one"),
    (dict(feature_cache="cache"), "freeze_scene true"),
    (dict(feature_cache="cache", freeze_scene=True), "change the pixels"),
    (dict(gaze_backbone="original", attention_layout=True, feature_cache="c", timm_model=None),
     "but 'gaze_backbone' .*as attention_layout: true\\) = 'chong'"),
])
def test_inconsistent_backbone_options_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        timm_config(**overrides)


def test_wrong_names_and_sizes_are_explained():
    with pytest.raises(ValueError, match="not a timm model name"):
        TimmEncoder("vit_small_patch14_reg4_dinov3", 56)
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        TimmEncoder(VIT, 64)


def test_shipped_dinov2_configurations_build():
    paper = load_config(["configs/dinov2/diffusion.yaml", "configs/dinov2/gaze.yaml"], {"device": "cpu"})
    assert paper.timm_model == "vit_base_patch14_reg4_dinov2"
    assert (paper.input_size, paper.unet_context_vector) == (448, 1024)
    assert paper.backbone_pretrained and paper.freeze_scene and paper.feature_cache
    encoder = TimmEncoder(paper.timm_model, paper.input_size)  # the architecture; the weights need the network
    assert (encoder.side, encoder.channels, encoder.num_prefix_tokens) == (32, 768, 5)
    demo = load_config(["configs/dinov2/demo/diffusion.yaml", "configs/dinov2/demo/gaze.yaml"], {})
    model = get_model(demo)
    assert model.gaze_backbone.num_tokens == 16 and not demo.backbone_pretrained
    assert model.frozen_streams == ["scene_backbone"]


@pytest.mark.parametrize("name, size, expected", [
    ("vit_small_patch16_dinov3", 64, (4, 384, 5)),  # DINOv3 (timm's eva.py): class + 4 registers, RoPE
    ("swin_tiny_patch4_window7_224", 64, (2, 768, 0)),  # a channels-last map
    ("convnext_atto", 64, (2, 320, 0)),
])
def test_other_timm_families(name, size, expected):
    encoder = TimmEncoder(name, size).eval()
    assert (encoder.side, encoder.channels, encoder.num_prefix_tokens) == expected
    with torch.no_grad():
        scene_map, prefix = encoder(torch.randn(2, 3, size, size))
    assert scene_map.shape == (2, expected[1], expected[0], expected[0])
    assert (prefix is None) == (expected[2] == 0)
