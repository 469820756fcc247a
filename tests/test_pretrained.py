"""Tests of pretrained/: the DiffusionGaze manifest converts 1:1 onto our model, Chong and Tonini checkpoints
round-trip, checkpoint unwrapping, scheme detection, custom rules and the shape-mismatch error."""

import json
import re

import pytest
import torch

from models.build import get_model
from pretrained.loading import detect_scheme, load_checkpoint_state, load_init_weights, unwrap_state_dict
from pretrained.renaming import SCHEMES, rename_key, rename_keys, rules_from_spec
from tests.conftest import SHARED
from tests.test_models import final_config, small_config
from tests.tiny_runs import TO_DIFFUSIONGAZE

MANIFEST = SHARED / "reference" / "original_model_state_dict.json"


def inverse_rename(state: dict, rules: list[tuple[str, str | None]]) -> dict:
    """Our names -> a foreign scheme's, written independently of pretrained.renaming (plain re.sub, first match)."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            if re.match(pattern, key):
                if replacement is not None:
                    out[re.sub(pattern, replacement, key, count=1)] = value
                break
        else:
            raise AssertionError(f"inverse rules do not cover {key}")
    return out


TO_CHONG = [
    (r"gaze_backbone\.(scene|face)_backbone\.(conv1|bn1|layer\d+)\.", r"\2_\1."),
    (r"gaze_backbone\.attn\.", "attn."),
    (r"gaze_backbone\.scene_encoder\.(conv|bn)(\d)\.", r"compress_\1\2."),
    (r"inout_head\.(conv|bn)(\d)\.", r"compress_\1\2_inout."),
    (r"inout_head\.fc\.", "fc_inout."),
    (r"(unet|gaze_backbone\.positional_encoding)\.", None),  # Chong's model has neither
]
TO_TONINI = [
    (r"gaze_backbone\.(scene_backbone|face_backbone|attn|scene_encoder)\.", r"\1."),
    (r"inout_head\.", "inout_decoder."),
    (r"(unet|gaze_backbone\.positional_encoding)\.", None),
]


def chong_layout_model(seed: int):
    torch.manual_seed(seed)
    return get_model(small_config(gaze_backbone="chong", adm_attention_module=True, unet_context_vector=64))


def expected_missing(model) -> list[str]:
    return [k for k in model.state_dict() if k.startswith("unet.") or k.startswith("gaze_backbone.positional_")]


# --------------------------------------------------------------------------------- DiffusionGaze manifest


@pytest.fixture(scope="module")
def manifest() -> dict[str, list[int]]:
    if not MANIFEST.exists():
        pytest.skip(f"shared reference {MANIFEST} not present")
    return json.loads(MANIFEST.read_text())


def test_manifest_converts_one_to_one(manifest):
    with torch.device("meta"):
        # The original built its attention layer and both positional encodings in every configuration, so its
        # checkpoints always carry them; the final configuration uses the encodings, the attention variant the layer.
        final = get_model(final_config())
        attention = get_model(final_config(adm_attention_module=True))
    ours = {key: list(tensor.shape) for model in (final, attention) for key, tensor in model.state_dict().items()}
    renamed, dropped, unmatched = rename_keys(manifest, SCHEMES["diffusiongaze"])
    assert dropped == [] and unmatched == []
    converted = {new: manifest[old] for old, new in renamed.items()}
    assert len(converted) == len(manifest) == 1182
    assert set(converted) == set(ours)
    assert set(final.state_dict()) ^ set(attention.state_dict()) == {
        "gaze_backbone.attn.weight", "gaze_backbone.attn.bias", "gaze_backbone.scene_positional_encoding.inv_freq",
        "gaze_backbone.face_positional_encoding.inv_freq"}
    assert [key for key in converted if converted[key] != ours[key]] == []
    face_encoding = renamed["gaze_model.postional_embedding_2.penc.inv_freq"]
    assert face_encoding == "gaze_backbone.face_positional_encoding.inv_freq"
    assert renamed["sequential.3.weight"] == "inout_head.conv2.weight"
    assert renamed["model.output_blocks.5.2.conv.bias"] == "unet.output_blocks.5.2.conv.bias"


def test_manifest_loads_into_final_configuration(manifest):
    with torch.device("meta"):
        model = get_model(final_config())
        state = {key: torch.empty(shape) for key, shape in manifest.items()}
    report = load_init_weights(model, state)
    assert report.scheme == "diffusiongaze"
    assert report.missing == [] and report.shape_mismatched == []
    # adm_attention_module is off in the final configuration: the original's unused attention layer is dropped.
    assert report.unexpected == [] and report.dropped == ["gaze_model.attn.weight", "gaze_model.attn.bias"]
    assert len(report.loaded) == 1180
    with torch.device("meta"):
        attention_model = get_model(final_config(adm_attention_module=True))
    report = load_init_weights(attention_model, state)
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == 1180
    assert report.dropped == ["gaze_model.postional_embedding_1.penc.inv_freq",
                              "gaze_model.postional_embedding_2.penc.inv_freq"]


# --------------------------------------------------------------------------------- Chong and Tonini round trips


def test_chong_checkpoint_round_trip(tmp_path):
    source = chong_layout_model(seed=1)
    chong_state = inverse_rename(source.state_dict(), TO_CHONG)
    assert "layer5_scene.0.downsample.1.running_var" in chong_state and "compress_bn2_inout.weight" in chong_state
    decoder = {"deconv1.weight": torch.randn(64, 32, 3, 3), "deconv_bn3.running_mean": torch.zeros(1),
               "conv4.bias": torch.zeros(1)}
    lstm = {"convlstm_scene.cell_list.0.weight": torch.zeros(3)}  # ModelSpatioTemporal only
    path = tmp_path / "chong.pt"
    torch.save({"model": {**chong_state, **decoder, **lstm}}, path)

    target = chong_layout_model(seed=2)
    unet_before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("unet.")}
    report = load_init_weights(target, path)
    assert report.scheme == "chong"
    assert sorted(report.dropped) == sorted(decoder)
    assert report.unmatched == list(lstm)
    assert report.unexpected == [] and report.shape_mismatched == []
    assert report.missing == expected_missing(target)
    loaded_state, source_state = target.state_dict(), source.state_dict()
    assert len(report.loaded) == len(chong_state)
    for key in report.loaded:
        assert torch.equal(loaded_state[key], source_state[key]), key
    for key, value in unet_before.items():
        assert torch.equal(loaded_state[key], value), key


def test_tonini_checkpoint_round_trip(tmp_path):
    source = chong_layout_model(seed=1)
    tonini_state = inverse_rename(source.state_dict(), TO_TONINI)
    assert "scene_encoder.conv2.weight" in tonini_state and "inout_decoder.fc.bias" in tonini_state
    depth_branch = {"depth_backbone.conv1.weight": torch.zeros(8, 4, 7, 7), "depth_encoder.bn1.bias": torch.zeros(4)}
    decoder = {"decoder.conv1.weight": torch.zeros(2, 2, 1, 1)}
    path = tmp_path / "tonini.pt"
    torch.save({"model_state_dict": {**tonini_state, **depth_branch, **decoder}, "epoch": 3,
                "optimizer_state_dict": {"state": {}}}, path)

    target = chong_layout_model(seed=2)
    report = load_init_weights(target, path, scheme="auto")
    assert report.scheme == "tonini"
    # Tonini's depth branch has a place only in a model built with depth_flag; this model has none.
    assert report.unexpected == ["gaze_backbone.depth_backbone.conv1.weight", "gaze_backbone.depth_encoder.bn1.bias"]
    assert report.dropped == list(decoder) and report.unmatched == []
    assert report.missing == expected_missing(target)
    assert len(report.unused) == len(depth_branch) + len(decoder)
    loaded_state, source_state = target.state_dict(), source.state_dict()
    for key in report.loaded:
        assert torch.equal(loaded_state[key], source_state[key]), key
    assert len(report.loaded) == len(tonini_state)


def test_chong_rules_send_inout_layers_to_the_inout_head():
    rules = SCHEMES["chong"]
    assert rename_key("compress_conv1_inout.weight", rules) == ("inout_head.conv1.weight", True)
    assert rename_key("compress_bn2.num_batches_tracked", rules) == (
        "gaze_backbone.scene_encoder.bn2.num_batches_tracked", True)
    assert rename_key("layer5_face.1.bn3.running_var", rules) == (
        "gaze_backbone.face_backbone.layer5.1.bn3.running_var", True)
    assert rename_key("deconv_bn2.weight", rules) == (None, True)
    assert rename_key("convlstm_scene.x", rules) == ("convlstm_scene.x", False)


# --------------------------------------------------------------------------------- files, schemes, rules, errors


def test_load_checkpoint_state_unwraps_known_containers(tmp_path):
    state = {"a.weight": torch.ones(2), "a.bias": torch.zeros(2)}
    for container in (None, "model", "model_state_dict", "state_dict"):
        path = tmp_path / f"{container}.pt"
        torch.save(state if container is None else {container: state, "epoch": 7}, path)
        loaded = load_checkpoint_state(path)
        assert list(loaded) == list(state) and torch.equal(loaded["a.weight"], state["a.weight"])
    wrapped = unwrap_state_dict({"module.a.weight": torch.ones(1), "module.b": torch.ones(1)})
    assert list(wrapped) == ["a.weight", "b"]
    with pytest.raises(ValueError, match="no state dict found.*epoch"):
        unwrap_state_dict({"epoch": 3, "run_id": "x"}, source="ckpt.pt")
    with pytest.raises(ValueError, match="not tensors"):
        unwrap_state_dict({"model": {"a": torch.ones(1), "b": 3}})


def test_detect_scheme():
    assert detect_scheme({"conv1_scene.weight": 0, "fc_inout.bias": 0}) == "chong"
    assert detect_scheme({"scene_backbone.conv1.weight": 0, "inout_decoder.fc.bias": 0}) == "tonini"
    assert detect_scheme({"gaze_model.attn.weight": 0, "model.out.2.bias": 0}) == "diffusiongaze"
    assert detect_scheme({"unet.out.2.bias": 0}) == "project"
    with pytest.raises(ValueError, match="no known scheme"):
        detect_scheme({"encoder.weight": 0})
    with pytest.raises(ValueError, match="several"):
        detect_scheme({"conv1_scene.weight": 0, "scene_backbone.conv1.weight": 0})


def test_project_checkpoint_loads_completely():
    source, target = chong_layout_model(seed=1), chong_layout_model(seed=2)
    report = load_init_weights(target, source.state_dict())
    assert report.scheme == "project"
    assert report.missing == [] and report.unused == [] and len(report.loaded) == len(source.state_dict())
    assert torch.equal(target.unet.out[0].weight, source.unet.out[0].weight)


def test_extra_rules_from_yaml_like_specs():
    source, target = chong_layout_model(seed=1), chong_layout_model(seed=2)
    foreign = {key.replace("gaze_backbone.scene_backbone.", "rgb_net."): value
               for key, value in source.state_dict().items() if key.startswith("gaze_backbone.scene_backbone.")}
    for spec in ({r"rgb_net\.": "gaze_backbone.scene_backbone."},
                 [[r"rgb_net\.", "gaze_backbone.scene_backbone."]],
                 [{"pattern": r"rgb_net\.", "replacement": "gaze_backbone.scene_backbone."}]):
        report = load_init_weights(target, foreign, scheme=None, extra_rules=spec)
        assert report.scheme == "custom" and len(report.loaded) == len(foreign) and report.unused == []
    scene_target, scene_source = target.gaze_backbone.scene_backbone, source.gaze_backbone.scene_backbone
    assert torch.equal(scene_target.conv1.weight, scene_source.conv1.weight)


def test_extra_rules_take_precedence_over_the_scheme():
    source = chong_layout_model(seed=1)
    chong_state = inverse_rename(source.state_dict(), TO_CHONG)
    report = load_init_weights(chong_layout_model(seed=2), chong_state, extra_rules=[(r"fc_inout\.", None)])
    assert sorted(report.dropped) == ["fc_inout.bias", "fc_inout.weight"]
    assert "inout_head.fc.weight" in report.missing


@pytest.mark.parametrize("spec, message", [
    ([("(unclosed", "x")], "not a regular expression"),
    ([("a", "b", "c")], "pair"),
    ([{"pattern": "a"}], "exactly the keys"),
    ([(3, "x")], "string pattern"),
])
def test_bad_rules_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        rules_from_spec(spec)


def test_ambiguous_renaming_is_an_error():
    with pytest.raises(ValueError, match="maps both"):
        rename_keys(["a.w", "b.w"], [(r"(a|b)\.", "c.")])


def test_shape_mismatch_is_an_error_and_loads_nothing():
    source, target = chong_layout_model(seed=1), chong_layout_model(seed=2)
    state = dict(source.state_dict())
    state["inout_head.fc.weight"] = torch.zeros(1, 99)
    before = target.gaze_backbone.attn.weight.clone()
    with pytest.raises(ValueError, match=r"inout_head\.fc\.weight: checkpoint \[1, 99\], model \[1, 16\]"):
        load_init_weights(target, state)
    assert torch.equal(target.gaze_backbone.attn.weight, before)


def test_unknown_scheme_and_missing_rules():
    model = chong_layout_model(seed=1)
    with pytest.raises(ValueError, match="unknown renaming scheme"):
        load_init_weights(model, model.state_dict(), scheme="timm")
    with pytest.raises(ValueError, match="needs extra_rules"):
        load_init_weights(model, model.state_dict(), scheme=None)




def test_scene_only_checkpoint_of_the_point_branches_loads_completely():
    """The point branches' head_flag: false model: the original still built (and saved) its face ResNet, attention
    layer and positional encodings; here they are reported as dropped, and everything the model has is loaded."""
    torch.manual_seed(1)
    source = get_model(small_config(head_flag=False))
    assert not any("face_backbone" in key or "positional" in key for key in source.state_dict())
    original = inverse_rename(source.state_dict(), TO_DIFFUSIONGAZE)
    unused = {"gaze_model.face_backbone.conv1.weight": torch.zeros(8, 3, 7, 7),
              "gaze_model.attn.weight": torch.zeros(16, 8), "gaze_model.postional_embedding_1.penc.inv_freq":
              torch.zeros(32), "gaze_model.postional_embedding_2.penc.inv_freq": torch.zeros(32)}
    torch.manual_seed(2)
    target = get_model(small_config(head_flag=False))
    report = load_init_weights(target, {**original, **unused})
    assert report.scheme == "diffusiongaze"
    assert report.missing == [] and report.unexpected == [] and sorted(report.dropped) == sorted(unused)
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
