"""The depth stream (depth_flag): a third ResNet on cat(colour-mapped depth, head mask), as in Tonini et al. 2022."""
import pytest
import torch

from models.build import get_model
from pretrained.loading import load_init_weights
from tests.test_models import gaze_inputs, small_config
from tests.test_pretrained import expected_missing, inverse_rename

# Our names -> Tonini et al.'s, depth branch included (written independently of pretrained.renaming).
TO_TONINI_WITH_DEPTH = [
    (r"gaze_backbone\.(scene_backbone|face_backbone|depth_backbone|attn|scene_encoder|depth_encoder)\.", r"\1."),
    (r"inout_head\.", "inout_decoder."),
    (r"(unet|gaze_backbone\.positional_encoding)\.", None),
]


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


def depth_model(seed: int, **overrides):
    overrides.setdefault("gaze_backbone", "original_depth_tokens")  # Tonini et al.'s depth tokens unless a test says
    # otherwise
    torch.manual_seed(seed)
    return get_model(small_config(depth_flag=True, list_resnet_depth_layers=[1, 1, 1, 1, 1],
                                  resnet_depth_inplanes=8, **overrides)).eval()


def test_original_backbone_adds_depth_tokens_and_sums_depth_into_the_inout_features():
    model = depth_model(0)
    image, head_mask, face = gaze_inputs(2, 128)
    depth = torch.rand(2, 3, 128, 128)
    assert model.state_dict()["gaze_backbone.depth_backbone.conv1.weight"].shape == (8, 4, 7, 7)
    with torch.no_grad():
        features = model.encode(image, head_mask, face, depth)
        other = model.encode(image, head_mask, face, torch.rand(2, 3, 128, 128))
        backbone = model.gaze_backbone
        scene, face_map, depth_map = backbone.streams(image, head_mask, face, depth)
    assert features["conditioning"].shape == (2, 3 * 16, 128)  # scene, depth and face tokens of a 4 x 4 map
    torch.testing.assert_close(features["scene_face_feat"], torch.cat([scene + depth_map, face_map], dim=1))
    assert not torch.allclose(features["conditioning"], other["conditioning"])
    with pytest.raises(ValueError, match="has a depth stream .* but no depth maps"):
        model.encode(image, head_mask, face)
    with pytest.raises(ValueError, match="without a depth stream"):
        get_model(small_config()).encode(image, head_mask, face, depth)


def test_tonini_checkpoint_with_its_depth_branch_loads_completely(tmp_path):
    source = depth_model(1, gaze_backbone="chong", adm_attention_module=True, unet_context_vector=64)
    tonini_state = inverse_rename(source.state_dict(), TO_TONINI_WITH_DEPTH)
    assert "depth_backbone.conv1.weight" in tonini_state and "depth_encoder.conv1.weight" in tonini_state
    path = tmp_path / "tonini_depth.pt"
    torch.save({"model_state_dict": tonini_state}, path)
    target = depth_model(2, gaze_backbone="chong", adm_attention_module=True, unet_context_vector=64)
    report = load_init_weights(target, path, scheme="auto")
    assert report.unexpected == [] and report.missing == expected_missing(target)
    for key in report.loaded:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key]), key
    image, head_mask, face = gaze_inputs(1, 128)
    with torch.no_grad():
        assert target.encode(image, head_mask, face, torch.rand(1, 3, 128, 128))["conditioning"].shape == (1, 16, 64)


def test_original_depth_model_tokens_and_a_one_epoch_run(tmp_path):
    """gaze_backbone diffusiongaze_depth is the original DiffusionGaze depth model (parity: test_diffusiongaze_parity);
    the original's spelling, depth_flag with depth_layout diffusiongaze, selects it on the command line."""
    from datasets.synthetic_formats import write_depth_maps
    from engine.train import run
    from tests.tiny_runs import make_tiny_dataset, tiny_config

    model = depth_model(3, gaze_backbone="diffusiongaze_depth")
    assert type(model.gaze_backbone).__name__ == "DiffusionGazeDepthBackbone"
    image, head_mask, face = gaze_inputs(2, 128)
    with torch.no_grad():
        features = model.encode(image, head_mask, face, torch.rand(2, 3, 128, 128))
        scene, face_map, _ = model.gaze_backbone.streams(image, head_mask, face, torch.rand(2, 3, 128, 128))
    assert features["conditioning"].shape == (2, 2 * 16, 128)  # encoded scene+face, then depth+face tokens
    torch.testing.assert_close(features["scene_face_feat"], torch.cat([scene, face_map], dim=1))
    assert type(get_model(small_config()).gaze_backbone).__name__ == "OriginalGazeBackbone"  # read with depth_flag
    with pytest.raises(ValueError, match="adm_attention_module: false.*'original_depth_tokens'"):
        depth_model(3, gaze_backbone="diffusiongaze_depth", adm_attention_module=True)

    dataset = make_tiny_dataset(tmp_path / "data")
    write_depth_maps(dataset, "gazefollow")
    config = tiny_config(dataset, tmp_path / "out", "depth", "--epochs", "1", "--depth_flag", "--depth_layout",
                         "diffusiongaze", "--list_resnet_depth_layers", "1", "1", "1", "1", "1",
                         "--resnet_depth_inplanes", "8")
    assert config.gaze_backbone == "diffusiongaze_depth"
    assert 0.0 <= run(config)["auc"] <= 1.0
