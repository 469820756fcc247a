"""Gaze360 models and losses: the seven variants from one model (parameter counts by hand, target index, max-pool),
the spatial transformer, ImageNet weight loading, pinball / sin-cos losses by hand, wrap-aware decoding, angular
error and correlations."""
import math

import numpy as np
import pytest
import torch

from engine.config import load_config
from gaze360.evaluate import angular_error_degrees, pearson, spearman
from gaze360.losses import gaze_loss, pinball_loss, sincos_pinball_loss
from gaze360.models import MultiCropGazeModel, SpatialTransformer, build_model, decode_yaw_pitch, \
    load_backbone_weights, mean_yaw_pitch
from gaze360.options import GAZE360
from torchvision.models import resnet18
from tests.conftest import ROOT

TINY = dict(backbone_layers=[1, 1], backbone_inplanes=4, backbone_fc=0, feature_size=8, lstm_layers=1)
RESNET18 = 11_689_512  # torchvision's ResNet-18 with its 1000-class fc


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


def lstm_parameters(inputs: int, hidden: int, layers: int, directions: int) -> int:
    total = 0
    for layer in range(layers):
        layer_in = inputs if layer == 0 else hidden * directions
        total += directions * (4 * hidden * (layer_in + hidden) + 8 * hidden)
    return total


def test_paper_models_parameter_counts_by_hand():
    static = build_model(load_config([ROOT / "configs/gaze360/static.yaml"], {}, GAZE360))
    assert sum(p.numel() for p in static.parameters()) == RESNET18 + (1000 * 256 + 256) + (256 * 3 + 3)
    seq = build_model(load_config([ROOT / "configs/gaze360/seq_lstm.yaml"], {}, GAZE360))
    assert lstm_parameters(256, 256, 2, 2) == 2_629_632
    assert sum(p.numel() for p in seq.parameters()) == RESNET18 + 256_256 + 2_629_632 + (512 * 3 + 3)


# variant -> (images per sample, LSTM output read, frame_crops); the original's layouts (see the parity test)
SHIPPED = {"static": (1, 0), "static_sc": (1, 0), "static_sc_lstm": (4, 3), "static_sc_lstm_sym": (7, 3),
           "seq_lstm": (7, 3), "seq_sc_lstm": (7, 6), "seq_sc_lstm_sym": (7, 3), "msa": (4, 2), "msa_raw": (4, 2),
           "msa_seq": (7, 3)}


@pytest.mark.parametrize("variant", sorted(SHIPPED))
def test_each_shipped_variant_config_builds_the_documented_model(variant):
    config = load_config([ROOT / f"configs/gaze360/{variant}.yaml"], {}, GAZE360)
    assert (config.resize, config.train_crop_scale, config.yaw_decoding, config.frame_crops) == (
        "square", 1.0, "original", "zip")  # the original's pre-processing and decoding
    tiny = build_model(config.replace(**TINY))
    assert (tiny.sequence_length, tiny.target_index) == SHIPPED[variant]
    out = tiny(torch.randn(2, tiny.sequence_length, 3, 16, 16))
    assert out["output"].shape == (2, 2 if config.target == "yawpitch" else 3) and out["sigma"].shape == (2, 1)


def test_this_projects_every_crop_network_has_a_name_of_its_own():
    config = load_config([ROOT / "configs/gaze360/every_crop_sc_lstm.yaml"], {}, GAZE360)
    tiny = build_model(config.replace(**TINY))
    assert (tiny.sequence_length, tiny.target_index) == (28, 15)  # 7 frames x 4 crops; last crop of frame t
    assert (config.frame_crops, config.resize, config.yaw_decoding) == ("all", "shorter_side", "atan2")


def _tiny(**changes):
    kwargs = dict(sequence_length=6, num_frames=3, num_crops=2, temporal="lstm", lstm_bidirectional=False,
                  target_index="central_frame_last", target="yawpitch", backbone_layers=[1, 1], backbone_inplanes=4,
                  backbone_fc=0, feature_size=8, lstm_layers=1)
    kwargs.update(changes)
    torch.manual_seed(0)
    return MultiCropGazeModel(**kwargs).eval()


def test_target_index_reads_the_last_crop_of_the_central_frame():
    model = _tiny()
    assert model.target_index == 3  # frame-major: [f0c0, f0c1, f1c0, f1c1, f2c0, f2c1]
    images = torch.randn(1, 6, 3, 16, 16)
    reference = model(images)["output"]
    later = images.clone()
    later[:, 4:] = torch.randn(1, 2, 3, 16, 16)  # frames after the read index: a forward LSTM cannot see them
    assert torch.equal(model(later)["output"], reference)
    earlier = images.clone()
    earlier[:, 3] = torch.randn(3, 16, 16)
    assert not torch.allclose(model(earlier)["output"], reference)
    assert _tiny(target_index="last").target_index == 5 and _tiny(target_index="middle").target_index == 3


def test_spatial_max_takes_the_max_of_feature_maps_and_attention_weights_sum_to_one():
    model = _tiny(temporal="spatial_max", target="sincos")
    images = torch.randn(2, 6, 3, 16, 16)
    torch.testing.assert_close(model(images)["output"], model(images[:, [5, 3, 1, 0, 2, 4]])["output"])
    maps = model.feature_maps(images.flatten(0, 1)).view(2, 6, *model.feature_maps(images[:, 0]).shape[1:])
    expected = model.head(model.embed(maps.max(dim=1).values))
    torch.testing.assert_close(model.head(model.fused_features(images)), expected)
    attention = _tiny(temporal="attention", attention_dim=5)
    assert attention.attention.score.out_features == 6 and attention.attention.project[0].out_features == 5
    features = torch.randn(2, 6, 8)
    same = features[:, :1].expand(2, 6, 8)  # equal inputs: any convex combination returns them
    torch.testing.assert_close(attention.attention(same), features[:, 0])


def test_maxpool_aggregation_ignores_order_and_outputs_are_in_range():
    model = _tiny(temporal="maxpool", target="sincos")
    images = torch.randn(2, 6, 3, 16, 16)
    assert model.lstm is None
    torch.testing.assert_close(model(images)["output"], model(images[:, [5, 3, 1, 0, 2, 4]])["output"])
    yawpitch = _tiny(target="yawpitch")
    raw_scale = 100.0
    with torch.no_grad():
        yawpitch.head.bias.fill_(raw_scale)
    out = yawpitch(images)
    assert out["output"][:, 0].max() <= math.pi and out["output"][:, 1].max() <= math.pi / 2
    assert 0 < out["sigma"].min() and out["sigma"].max() <= math.pi
    with pytest.raises(ValueError, match=r"expected images \[B, 6, 3, S, S\]"):
        model(torch.randn(2, 5, 3, 16, 16))


def test_spatial_transformer_starts_as_the_identity():
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(SpatialTransformer()(x), x, atol=1e-5, rtol=0)
    model = _tiny(spatial_transformer=True)
    assert model.stn is not None and model(torch.randn(1, 6, 3, 16, 16))["output"].shape == (1, 2)


def test_imagenet_weights_fill_the_whole_backbone_fc_included(tmp_path):
    source = resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = MultiCropGazeModel(sequence_length=1, temporal="none")
    load_backbone_weights(model, str(tmp_path / "resnet18.pth"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    torch.save(partial, tmp_path / "no_fc.pth")
    with pytest.raises(RuntimeError, match="2 backbone tensors are missing"):
        load_backbone_weights(model, str(tmp_path / "no_fc.pth"))


def test_pinball_loss_by_hand():
    output, sigma = torch.zeros(1, 1), torch.full((1, 1), 0.5)
    # target 1: lower bound -0.5 -> 0.1 * 1.5; upper bound 0.5 -> 0.9 * 0.5
    assert pinball_loss(output, sigma, torch.ones(1, 1)).item() == pytest.approx(0.15 + 0.45)
    assert pinball_loss(output, sigma, -torch.ones(1, 1)).item() == pytest.approx(0.45 + 0.15)
    assert pinball_loss(output, sigma, torch.zeros(1, 1)).item() == pytest.approx(0.05 + 0.05)
    # sigma [B, 1] broadcasts over the outputs; the mean runs over batch and outputs
    two = pinball_loss(torch.zeros(1, 2), sigma, torch.tensor([[1.0, 0.0]]))
    assert two.item() == pytest.approx((0.6 + 0.1) / 2)


def test_sincos_loss_adds_the_unit_norm_term():
    sigma, target = torch.zeros(1, 1), torch.tensor([[0.6, 0.8, 0.0]])
    on_circle = torch.tensor([[0.6, 0.8, 0.0]])
    assert sincos_pinball_loss(on_circle, sigma, target).item() == pytest.approx(0.0, abs=1e-7)
    inside = torch.tensor([[0.3, 0.4, 0.0]])  # norm 0.5: MSE term 0.25
    expected = 0.9 * pinball_loss(inside, sigma, target).item() + 0.1 * 0.25
    assert sincos_pinball_loss(inside, sigma, target).item() == pytest.approx(expected)
    config = load_config([], {"loss": "mse", "target": "sincos"}, GAZE360)
    assert gaze_loss({"output": inside, "sigma": sigma}, target, config).item() == pytest.approx((0.09 + 0.16) / 3)


def test_wrap_aware_yaw_decoding_and_averaging():
    yaw = torch.tensor([math.radians(179.0), math.radians(-179.0)])
    output = torch.stack([torch.sin(yaw), torch.cos(yaw), torch.full((2,), 1.5)], 1)  # sin pitch out of range
    decoded = decode_yaw_pitch(output, "sincos")
    torch.testing.assert_close(decoded[:, 0], yaw)
    torch.testing.assert_close(decoded[:, 1], torch.full((2,), math.pi / 2))  # clamped, not NaN
    mean = mean_yaw_pitch(torch.stack([yaw, torch.zeros(2)], -1), dim=0)
    assert abs(mean[0].item()) == pytest.approx(math.pi, abs=1e-6)  # not 0: the circular mean crosses the seam


def test_angular_error_is_clamped_and_correct():
    assert angular_error_degrees([[1, 0, 0]], [[0, 1, 0]])[0] == pytest.approx(90.0)
    assert angular_error_degrees([[1, 0, 0]], [[-1, 0, 0]])[0] == pytest.approx(180.0)
    vectors = np.random.default_rng(0).normal(size=(2000, 3))
    same = angular_error_degrees(vectors, vectors * 3.0)
    assert np.isfinite(same).all() and same.max() < 1e-5


def test_correlations_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    y[:10] = y[0]  # ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert math.isnan(pearson(x, np.ones(200)))
