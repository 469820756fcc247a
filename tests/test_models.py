"""Tests of models/: ResNet and UNet parameter counts, attention parity, positional encoding values, backbone and
whole-model shapes, option errors and freezing."""

import math
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from models.attention import CrossAttention
from models.backbones import (BACKBONES, SinusoidalPositionalEncoding2D, build_backbone, head_conditioned_attention,
                              pooled_head_side, register_backbone)
from models.build import MODEL_OPTIONS, count_parameters, get_model
from models.resnet import BasicBlock, Bottleneck, ResNet
from models.unet import UNetModel, timestep_embedding


def final_config(**overrides) -> SimpleNamespace:
    """The original DiffusionGaze final configuration (gaze.yaml / diffusion.yaml of the last commit)."""
    options = dict(
        list_resnet_scene_layers=[3, 4, 6, 3, 2], list_resnet_face_layers=[3, 4, 6, 3, 2],
        resnet_scene_inplanes=64, resnet_face_inplanes=64, input_size=224, output_size=64,
        unet_inout_channels=1, unet_inplanes=8, unet_residual=1, list_unet_inplanes_multipliers=[1, 2, 3, 4],
        list_unet_attention_levels=[2, 4, 8], unet_spatial_tf_heads=4, unet_spatial_tf_layers=1,
        unet_context_vector=1024, unet_dropout=0.0, use_scale_shift_norm=True, conv_resample=True,
        resblock_updown=False, adm_learn_sigma=False, adm_attention_module=False, gaze_backbone="original",
        head_flag=True, depth_flag=False, list_resnet_depth_layers=[3, 4, 6, 3, 2], resnet_depth_inplanes=64,
        freeze_scene=False, freeze_face=False, concat_scene=False,
    )
    options.update(overrides)
    return SimpleNamespace(**options)


def small_config(**overrides) -> SimpleNamespace:
    """A tiny model: ResNets of one block per layer with stem width 8 give 128 x 4 x 4 maps at 128 input."""
    options = dict(
        list_resnet_scene_layers=[1, 1, 1, 1, 1], list_resnet_face_layers=[1, 1, 1, 1, 1],
        resnet_scene_inplanes=8, resnet_face_inplanes=8, input_size=128, output_size=16,
        unet_inplanes=8, list_unet_inplanes_multipliers=[1, 2], list_unet_attention_levels=[2],
        unet_spatial_tf_heads=2, unet_context_vector=128,
    )
    options.update(overrides)
    return final_config(**options)


def gaze_inputs(batch: int, size: int):
    head_mask = torch.zeros(batch, 1, size, size)
    head_mask[:, :, : size // 4, size // 4: size // 2] = 1.0
    return torch.randn(batch, 3, size, size), head_mask, torch.randn(batch, 3, size, size)


# ----------------------------------------------------------------------------------------------------- ResNet


@pytest.mark.parametrize("name, block, layers, expected", [
    ("resnet18", BasicBlock, [2, 2, 2, 2], 11_689_512), ("resnet34", BasicBlock, [3, 4, 6, 3], 21_797_672),
    ("resnet50", Bottleneck, [3, 4, 6, 3], 25_557_032)])
def test_four_layer_resnet_is_torchvisions(name, block, layers, expected):
    """At a standard depth the configurable ResNet is torchvision's: the same names, shapes, parameter count and, with
    torchvision's weights loaded strictly, the same outputs."""
    reference = getattr(torchvision.models, name)(weights=None).eval()
    ours = ResNet(block, layers, num_classes=1000).eval()
    assert count_parameters(ours) == count_parameters(reference) == expected
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict())
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(image), reference(image))


def test_five_layer_gaze_resnet_gives_1024_by_7_by_7():
    resnet = ResNet(Bottleneck, [3, 4, 6, 3, 2], inplanes=64, in_channels=4)
    assert resnet.out_channels == 1024 and resnet.output_size(224) == 7
    # Fifth layer: 256 planes at stride 1, as the original's `layer5` (2048 -> 1024 channels by its shortcut).
    assert tuple(resnet.layer5[0].downsample[0].weight.shape) == (1024, 2048, 1, 1)
    assert resnet.layer5[0].conv2.stride == (1, 1)
    with torch.no_grad():
        assert resnet(torch.randn(1, 4, 224, 224)).shape == (1, 1024, 7, 7)


@pytest.mark.parametrize("size", [64, 97, 112, 130])
def test_resnet_output_size_matches_forward(size):
    resnet = ResNet(BasicBlock, [1, 1, 1], inplanes=4).eval()
    with torch.no_grad():
        out = resnet(torch.randn(1, 3, size, size))
    assert out.shape[2:] == (resnet.output_size(size),) * 2
    assert out.shape[1] == resnet.out_channels == 16


def test_resnet_layer_count_errors_and_explicit_plan():
    with pytest.raises(ValueError, match="non-empty"):
        ResNet(Bottleneck, [])
    with pytest.raises(ValueError, match="layer_plan"):
        ResNet(Bottleneck, [1] * 6)
    resnet = ResNet(BasicBlock, [1] * 6, inplanes=4, layer_plan=[(1, 1)] * 5 + [(2, 2)])
    assert resnet.out_channels == 8 and resnet.output_size(32) == 4


# ------------------------------------------------------------------------------------------------------- UNet


def final_unet(**overrides) -> UNetModel:
    options = dict(in_channels=1, model_channels=8, out_channels=1, num_res_blocks=1, attention_resolutions=[2, 4, 8],
                   channel_mult=[1, 2, 3, 4], num_heads=4, transformer_depth=1, context_dim=1024,
                   use_scale_shift_norm=True)
    options.update(overrides)
    return UNetModel(**options)


def test_unet_final_configuration_has_870705_parameters():
    assert count_parameters(final_unet()) == 870_705


def test_unet_shapes_with_int_and_float_timesteps():
    unet = final_unet(context_dim=32, out_channels=2)
    for t in (torch.tensor([0, 999]), torch.tensor([0.5, 998.25])):
        out = unet(torch.randn(2, 1, 32, 32), t, context=torch.randn(2, 5, 32))
        assert out.shape == (2, 2, 32, 32)


def test_unet_resblock_updown_and_pool_resampling():
    unet = UNetModel(1, 8, 1, 2, [1], [1, 2], 2, 2, 16, conv_resample=False, resblock_updown=True, dropout=0.1)
    assert unet(torch.randn(1, 1, 16, 16), torch.tensor([3]), context=torch.randn(1, 4, 16)).shape == (1, 1, 16, 16)
    # No resampling convolutions: ResBlocks carry the up/down steps.
    assert not any(name.endswith(".op.weight") or ".conv." in name for name in unet.state_dict())


def test_unet_output_depends_on_context():
    torch.manual_seed(0)
    unet = final_unet(context_dim=16, attention_resolutions=[1, 2])
    for parameter in unet.parameters():  # undo the zero initialisation so the attention path is visible
        nn.init.normal_(parameter, std=0.2)
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([10])
    first = unet(x, t, context=torch.randn(1, 3, 16))
    second = unet(x, t, context=torch.randn(1, 3, 16))
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("overrides, message", [
    (dict(attention_resolutions=[16]), "never reaches"),
    (dict(model_channels=12), "divisible by 8"),
    (dict(num_res_blocks=0), "unet_residual"),
])
def test_unet_rejects_inconsistent_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        final_unet(**overrides)


def test_timestep_embedding_hand_values():
    embedding = timestep_embedding(torch.tensor([0, 1]), 4)
    # freqs = exp(-ln(10000) * [0, 1] / 2) = [1, 0.01]; layout [cos, cos, sin, sin].
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]])
    torch.testing.assert_close(embedding, expected)
    assert timestep_embedding(torch.tensor([2.0]), 5)[0, -1] == 0.0


def test_cross_attention_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    heads, head_dim = 2, 3
    attention = CrossAttention(query_dim=6, heads=heads, head_dim=head_dim, context_dim=5).eval()
    x, context = torch.randn(2, 4, 6), torch.randn(2, 7, 5)

    def split(t):  # [B, N, heads * d] -> [B, heads, N, d]
        return t.view(t.shape[0], t.shape[1], heads, head_dim).permute(0, 2, 1, 3)

    q = split(x @ attention.to_q.weight.T)
    k = split(context @ attention.to_k.weight.T)
    v = split(context @ attention.to_v.weight.T)
    weights = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(head_dim), dim=-1)
    merged = torch.einsum("bhij,bhjd->bhid", weights, v).permute(0, 2, 1, 3).reshape(2, 4, heads * head_dim)
    expected = merged @ attention.to_out[0].weight.T + attention.to_out[0].bias
    torch.testing.assert_close(attention(x, context), expected)


# ------------------------------------------------------------------------------------------- gaze backbones


def test_positional_encoding_hand_values():
    encoding = SinusoidalPositionalEncoding2D(8).encoding(2, 3)
    # ceil(8 / 4) * 2 = 4 channels per axis, inv_freq = [1, 1/100]; cell (row 1, column 2):
    expected = torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01),
                             math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)])
    torch.testing.assert_close(encoding[:, 1, 2], expected)
    assert encoding.shape == (8, 2, 3)
    # 6 channels: still 4 per axis, cut after the column's first (sin, cos) pair.
    torch.testing.assert_close(SinusoidalPositionalEncoding2D(6).encoding(2, 3)[:, 1, 2], expected[:6])
    assert SinusoidalPositionalEncoding2D(1024).inv_freq.shape == (256,)  # as the original checkpoint's buffer


def test_head_conditioned_attention_weights_cells_by_softmax():
    scene = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4).repeat(2, 1, 1, 1)
    face = torch.randn(2, 5, 3, 4)
    head_mask = torch.zeros(2, 1, 16, 16)
    attn = nn.Linear(pooled_head_side(16) ** 2 + 5, 12)
    nn.init.zeros_(attn.weight)
    nn.init.zeros_(attn.bias)
    torch.testing.assert_close(head_conditioned_attention(attn, scene, head_mask, face), scene / 12)
    with torch.no_grad():
        attn.bias[7] = 100.0  # all weight on cell 7 = row 1, column 3
    attended = head_conditioned_attention(attn, scene, head_mask, face)
    torch.testing.assert_close(attended[:, :, 1, 3], scene[:, :, 1, 3])
    assert attended[:, :, 0, 0].abs().max() < 1e-6


def test_pooled_head_side():
    assert pooled_head_side(224) ** 2 + 1024 == 1808  # the original's Linear(1808 -> 49)
    assert pooled_head_side(112) == 14 and pooled_head_side(64) == 8


def test_registry_rejects_duplicates_and_lists_known_names():
    assert {"original", "chong"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("original")(nn.Identity)
    with pytest.raises(KeyError, match="chong"):
        build_backbone("no-such-backbone", small_config())


# --------------------------------------------------------------------------------------------- whole model


def test_final_configuration_parameter_counts():
    with torch.device("meta"):  # shapes only: building the 58M-parameter model this way takes no memory
        with_attention = get_model(final_config(adm_attention_module=True))
        without_attention = get_model(final_config())
    parts = [count_parameters(with_attention.gaze_backbone), count_parameters(with_attention.inout_head),
             count_parameters(with_attention.unet)]
    assert parts == [56_299_265, 1_050_164, 870_705]
    assert count_parameters(with_attention) == 58_220_134
    # The original built its attention Linear(1808 -> 49) even with adm_attention_module off, where it was never
    # used; here it exists only when used, 88,641 parameters fewer.
    assert count_parameters(without_attention) == 58_220_134 - (1808 * 49 + 49)


@pytest.fixture(scope="module")
def final_model_run():
    """The final-configuration model in eval mode, a batch of 2 at 224 input and its encoding."""
    torch.manual_seed(0)
    model = get_model(final_config()).eval()
    inputs = gaze_inputs(2, 224)
    with torch.no_grad():
        encoded = model.encode(*inputs)
    return model, inputs, encoded


def test_final_model_shapes_at_224(final_model_run):
    model, _, encoded = final_model_run
    assert encoded["conditioning"].shape == (2, 98, 1024)
    assert encoded["scene_face_feat"].shape == (2, 2048, 7, 7)
    with torch.no_grad():
        assert model.inout_logit(encoded["scene_face_feat"]).shape == (2,)
        x_t = torch.randn(2, 1, 64, 64)
        assert model.denoise(x_t, torch.tensor([5, 700]), encoded).shape == (2, 1, 64, 64)


def test_conditioning_tokens_are_map_cells_plus_positional_encoding(final_model_run):
    model, (image, head_mask, face), encoded = final_model_run
    backbone = model.gaze_backbone
    with torch.no_grad():  # the second sample, alone: eval-mode BatchNorm treats samples independently
        scene_map = backbone.scene_backbone(torch.cat([image[1:], head_mask[1:]], dim=1))[0]
        face_map = backbone.face_backbone(face[1:])[0]
    encoding = SinusoidalPositionalEncoding2D(1024).encoding(7, 7)
    conditioning = encoded["conditioning"][1]
    # Token 7 * 2 + 5 = 19 is the scene cell (row 2, column 5); token 49 + 19 the same face cell. Tolerances cover
    # the float32 differences of batch-1 against batch-2 convolutions; a wrong cell would be off by O(1).
    close = dict(rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(conditioning[19], scene_map[:, 2, 5] + encoding[:, 2, 5], **close)
    torch.testing.assert_close(conditioning[49 + 19], face_map[:, 2, 5] + encoding[:, 2, 5], **close)
    torch.testing.assert_close(encoded["scene_face_feat"][1], torch.cat([scene_map, face_map]), **close)


def test_small_model_at_112_input_gives_4_by_4_maps():
    model = get_model(small_config(input_size=112, adm_attention_module=True, adm_learn_sigma=True)).eval()
    image, head_mask, face = gaze_inputs(2, 112)
    with torch.no_grad():
        encoded = model.encode(image, head_mask, face)
        assert encoded["conditioning"].shape == (2, 32, 128)
        assert encoded["scene_face_feat"].shape == (2, 256, 4, 4)
        assert model.gaze_backbone.attn.in_features == 14 * 14 + 128
        assert model.gaze_backbone.attn.out_features == 16
        assert model.inout_logit(encoded["scene_face_feat"]).shape == (2,)
        assert model.inout_head.fc.in_features == 16
        out = model.denoise(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]), encoded)
        assert out.shape == (2, 2, 16, 16)  # learned sigma doubles the output channels


def test_wrong_input_size_is_reported():
    model = get_model(small_config()).eval()
    with pytest.raises(ValueError, match="input_size 128"):
        model.encode(*gaze_inputs(1, 96))


def test_scene_only_backbone_without_head_flag():
    model = get_model(small_config(head_flag=False)).eval()
    assert model.gaze_backbone.face_backbone is None
    # The head mask stays in the scene input, as in the original.
    assert model.gaze_backbone.scene_backbone.conv1.in_channels == 4
    with torch.no_grad():
        encoded = model.encode(*gaze_inputs(2, 128))
    assert encoded["conditioning"].shape == (2, 16, 128)
    assert encoded["scene_face_feat"].shape == (2, 128, 4, 4)
    assert model.inout_head.conv1.in_channels == 128
    assert model.inout_logit(encoded["scene_face_feat"]).shape == (2,)


def test_chong_layout_shapes():
    model = get_model(small_config(gaze_backbone="chong", adm_attention_module=True, unet_context_vector=64)).eval()
    assert type(model.gaze_backbone).__name__ == "ChongGazeBackbone"
    with torch.no_grad():
        encoded = model.encode(*gaze_inputs(2, 128))
        assert encoded["conditioning"].shape == (2, 16, 64)  # encoder: 256 -> 128 -> 64 channels
        assert encoded["scene_face_feat"].shape == (2, 256, 4, 4)
        out = model.denoise(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]), encoded)
    assert out.shape == (2, 1, 16, 16)


def test_chong_layout_at_final_size_needs_context_512():
    with torch.device("meta"):
        model = get_model(final_config(gaze_backbone="chong", adm_attention_module=True, unet_context_vector=512))
        assert tuple(model.gaze_backbone.scene_encoder.conv1.weight.shape) == (1024, 2048, 1, 1)
        assert tuple(model.gaze_backbone.scene_encoder.conv2.weight.shape) == (512, 1024, 1, 1)
        with pytest.raises(ValueError, match="unet_context_vector must be 512, got 1024"):
            get_model(final_config(gaze_backbone="chong", adm_attention_module=True))


@pytest.mark.parametrize("overrides, error, message", [
    (dict(unet_context_vector=64), ValueError, "unet_context_vector"),
    (dict(gaze_backbone="chong"), ValueError, "adm_attention_module: true"),
    (dict(head_flag=False, adm_attention_module=True), ValueError, "head_flag is false"),
    (dict(head_flag=False, freeze_face=True), ValueError, "no face stream"),
    (dict(list_resnet_face_layers=[1, 1, 1, 1]), ValueError, "same shape"),
    (dict(output_size=15), ValueError, "divisible by 2"),
    (dict(list_unet_attention_levels=[4]), ValueError, "never reaches"),
    (dict(gaze_backbone="original_depth_tokens", depth_flag=True, list_resnet_depth_layers=[1, 1, 1, 1]), ValueError,
     "scene and depth ResNets"),
    (dict(depth_flag=True), ValueError, "'original' has no depth stream"),
])
def test_inconsistent_options_are_rejected(overrides, error, message):
    with pytest.raises(error, match=message):
        get_model(small_config(**overrides))


def test_missing_option_is_named():
    config = small_config()
    del config.head_flag
    with pytest.raises(AttributeError, match="head_flag"):
        get_model(config)
    assert "attention_layout" not in MODEL_OPTIONS  # the original's layout flags end at the configuration's edge


@pytest.mark.parametrize("frozen, trained", [("scene_backbone", "face_backbone"), ("face_backbone", "scene_backbone")])
def test_freezing_a_stream_stops_gradients_and_batchnorm_statistics(frozen, trained):
    torch.manual_seed(0)
    option = "freeze_scene" if frozen == "scene_backbone" else "freeze_face"
    model = get_model(small_config(**{option: True}))
    model.eval()
    model.train()  # must not put the frozen stream's BatchNorm back into training mode
    frozen_stream = getattr(model.gaze_backbone, frozen)
    trained_stream = getattr(model.gaze_backbone, trained)
    assert not frozen_stream.bn1.training and trained_stream.bn1.training and model.unet.training
    assert all(not p.requires_grad for p in frozen_stream.parameters())

    frozen_before = frozen_stream.bn1.running_mean.clone()
    trained_before = trained_stream.bn1.running_mean.clone()
    encoded = model.encode(*gaze_inputs(2, 128))
    torch.testing.assert_close(frozen_stream.bn1.running_mean, frozen_before)
    assert not torch.allclose(trained_stream.bn1.running_mean, trained_before)

    model.inout_logit(encoded["scene_face_feat"]).sum().backward()
    assert all(p.grad is None for p in frozen_stream.parameters())
    assert trained_stream.conv1.weight.grad is not None

    unet_params, other_params = model.parameter_groups()
    frozen_ids = {id(p) for p in frozen_stream.parameters()}
    assert not frozen_ids & {id(p) for p in unet_params + other_params}
    assert len(unet_params) == len(list(model.unet.parameters()))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in unet_params + other_params) == trainable


def test_parameter_groups_split_unet_from_backbone_and_head():
    model = get_model(small_config())
    unet_params, other_params = model.parameter_groups()
    assert {id(p) for p in unet_params} == {id(p) for p in model.unet.parameters()}
    expected = {id(p) for module in (model.gaze_backbone, model.inout_head) for p in module.parameters()}
    assert {id(p) for p in other_params} == expected
