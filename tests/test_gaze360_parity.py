"""The shipped Gaze360 variant configs build the original MultiZoomGaze / Gaze360 networks and samples exactly.

Fixture tests/fixtures/gaze360/original_parity.json (how it was made: tests/fixtures/gaze360/README.md): for each
variant the ORIGINAL code's model (MultiZoomGaze; for gaze360_seq_lstm Gaze360's own code/model.py) (constructor in the fixture) was run in eval mode on seeded weights in its own
layout (tests/gaze360_parity.py draws every tensor from its key) and seeded inputs, in float64 and float32. Here
the same weights go through this project's converter (gaze360.checkpoints) into the model built from
configs/gaze360/<variant>.yaml; gaze and sigma must agree to 1e-10 (float64) and 1e-6 (float32). The original
code is never imported.
"""
import functools
import json

import pytest
import torch

from engine.config import load_config
from gaze360.checkpoints import convert_original_state_dict
from gaze360.losses import pinball_loss, sincos_pinball_loss
from gaze360.models import build_model, decode_yaw_pitch
from gaze360.options import GAZE360
from tests.conftest import ROOT
from tests.gaze360_parity import seeded_inputs, seeded_state_dict

FIXTURE = json.loads((ROOT / "tests/fixtures/gaze360/original_parity.json").read_text())
VARIANTS = sorted(FIXTURE["variants"])


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


@functools.lru_cache(maxsize=2)
def original_state(variant: str) -> dict:
    """The variant's weights in the original layout, DataParallel prefix included, as the original saves them."""
    entry = FIXTURE["variants"][variant]
    return {f"module.{k}": v for k, v in seeded_state_dict(entry["keys"], entry["weight_seed"]).items()}


def project_model(variant: str, dtype=torch.float64, **changes):
    """The variant's config model with the fixture's weights converted from the original layout."""
    entry = FIXTURE["variants"][variant]
    name = entry.get("config", variant)  # gaze360_seq_lstm: Gaze360's own code, built by seq_lstm.yaml
    config = load_config([ROOT / f"configs/gaze360/{name}.yaml"], {"device": "cpu", **changes}, GAZE360)
    model = build_model(config).to(dtype).eval()
    original = {k: v if v.dtype == torch.long else v.to(dtype) for k, v in original_state(variant).items()}
    state, report = convert_original_state_dict(original, model, variant)
    model.load_state_dict(state)
    assert f"{len(entry['keys'])} tensors mapped" in report
    return model, config


def run(model, variant: str, dtype):
    entry = FIXTURE["variants"][variant]
    shape = [FIXTURE["batch"], entry["sequence_length"], 3, entry["input_size"], entry["input_size"]]
    images = seeded_inputs(shape, entry["input_seed"], dtype)
    assert float(seeded_inputs(shape, entry["input_seed"]).sum()) == pytest.approx(entry["input_sum"], abs=1e-9)
    with torch.no_grad():
        return model(images)


def test_fixture_covers_every_published_variant():
    assert set(VARIANTS) >= {"static", "static_sc", "static_sc_lstm", "static_sc_lstm_sym", "seq_lstm", "seq_sc_lstm",
                             "seq_sc_lstm_sym", "msa", "msa_raw", "gaze360_seq_lstm"}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-6)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_equals_the_original_network(variant, dtype, tolerance):
    model, _ = project_model(variant, dtype)
    expected = FIXTURE["variants"][variant]["outputs"][str(dtype).split(".")[-1]]
    out = run(model, variant, dtype)
    assert model.sequence_length == FIXTURE["variants"][variant]["sequence_length"]
    torch.testing.assert_close(out["output"].double(), torch.tensor(expected["gaze"], dtype=torch.float64), atol=tolerance, rtol=0)
    torch.testing.assert_close(out["sigma"].double(), torch.tensor(expected["sigma"], dtype=torch.float64), atol=tolerance, rtol=0)


@pytest.mark.parametrize("variant, change", [
    ("static", {"feature_relu": False}), ("seq_lstm", {"feature_relu": True}), ("static_sc", {"sigma_scale": "pi"}),
    ("msa", {"temporal": "maxpool"}), ("seq_sc_lstm", {"target_index": "middle"})])
def test_the_comparison_detects_each_documented_difference(variant, change):
    """The issue's differences (ReLU placement, StaticSC's sigma, spatial vs vector max, output index) each move
    the outputs far beyond the tolerance: the parity test above can fail."""
    model, _ = project_model(variant, torch.float64, **change)
    expected = FIXTURE["variants"][variant]["outputs"]["float64"]
    out = run(model, variant, torch.float64)
    difference = max((out["output"] - torch.tensor(expected["gaze"], dtype=torch.float64)).abs().max().item(),
                     (out["sigma"] - torch.tensor(expected["sigma"], dtype=torch.float64)).abs().max().item())
    assert difference > 1e-3


def test_original_yaw_decoding_matches_the_original_and_atan2_differs_off_the_unit_circle():
    reference = FIXTURE["yaw_decoding"]
    outputs = torch.tensor(reference["inputs"], dtype=torch.float32)
    decoded = decode_yaw_pitch(outputs, "sincos", "original")
    torch.testing.assert_close(decoded.double(), torch.tensor(reference["yaw_pitch"], dtype=torch.float64), atol=1e-6, rtol=0)
    atan2 = decode_yaw_pitch(outputs, "sincos", "atan2")
    wrap = lambda a: torch.remainder(a + torch.pi, 2 * torch.pi) - torch.pi  # noqa: E731
    gap = wrap(atan2[:, 0] - decoded[:, 0]).abs()
    assert gap[:20].max() < 1e-3  # unit (sin, cos): the same angle
    assert gap[20:].max() > 0.1  # shrunk or skewed pairs: the original's average drifts


def test_losses_match_the_original():
    reference = FIXTURE["losses"]
    output, target = torch.tensor(reference["output"]), torch.tensor(reference["target"])
    sigma = torch.tensor(reference["sigma"])
    assert pinball_loss(output, sigma, target).item() == pytest.approx(reference["pinball"], abs=1e-6)
    assert sincos_pinball_loss(output, sigma, target).item() == pytest.approx(reference["regularised_sincos"],
                                                                              abs=1e-6)


@pytest.mark.parametrize("variant", sorted(FIXTURE["loaders"]))
def test_samples_equal_the_original_data_loaders(variant, tmp_path):
    """The original's loaders (named in the fixture) on the frames of write_parity_frames (non-square, 7-frame
    window): every image of the sequence and the target agree, in training (the original had no augmentation) and
    in evaluation."""
    from gaze360.build import TARGET_KEYS, make_dataset
    from tests.gaze360_parity import image_summary, write_parity_frames

    write_parity_frames(tmp_path)
    expected = FIXTURE["loaders"][variant]
    config = load_config([ROOT / f"configs/gaze360/{variant}.yaml"],
                         {"device": "cpu", "dataset_dir": str(tmp_path)}, GAZE360)
    for train in (False, True):
        sample = make_dataset(config, "test", train=train)[0]
        summary = image_summary(sample["images"])
        torch.testing.assert_close(torch.tensor(summary["means"], dtype=torch.float64), torch.tensor(expected["means"], dtype=torch.float64),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(summary["pixels"], dtype=torch.float64),
                                   torch.tensor(expected["pixels"], dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(sample[TARGET_KEYS[config.target]].double(),
                                   torch.tensor(expected["target"], dtype=torch.float64), atol=1e-6, rtol=0)
