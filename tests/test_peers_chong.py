"""Chong et al. 2020: this project's spatial and spatio-temporal models, built from files in their own layout
(`{'model': state_dict}`), give ejcgt/attention-target-detection's outputs (tests/fixtures/peers/README.md says how
they were computed by running that code).

Spatial: three people in one batch. Spatio-temporal: two people's tracks fed as their VideoAttentionTarget evaluation
script feeds them (chunks of 3 consecutive frames, hidden state carried within a track), both tracks in one batch
and each alone; the two differ where a call holds a single frame (its BatchNorms skipped), as in their code.
"""
from pathlib import Path

import pytest
import torch

from models.chong import ChongSpatial, ChongSpatioTemporal, run_tracks
from pretrained.peer_files import build_chong, load_chong_starting_weights, read_peer_file
from tests import peers_recipe as recipe

FIXTURE = Path(__file__).parent / "fixtures" / "peers" / "chong.pt"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE, weights_only=True)


def chong_file(reference, kind: str, path: Path) -> Path:
    torch.save({"model": recipe.state_dict(reference["layouts"][kind], **reference["recipes"][kind])}, path)
    return path


def assert_close(found, expected, what):
    difference = (found - expected).abs().max().item()
    assert difference <= TOLERANCE, f"{what}: differs from Chong et al.'s by {difference:.3g}"


@pytest.fixture(scope="module")
def spatial_file(reference, tmp_path_factory) -> Path:
    return chong_file(reference, "spatial", tmp_path_factory.mktemp("chong") / "model_gazefollow.pt")


def test_spatial_model_equals_chong(reference, spatial_file):
    assert read_peer_file(spatial_file).kind == "chong_spatial"
    model = build_chong(spatial_file)
    assert isinstance(model, ChongSpatial) and not model.training
    inputs = recipe.chong_spatial_inputs()
    with torch.no_grad():
        heatmap, inout_logit = model(inputs["image"], inputs["head_channel"], inputs["face"])
    expected = reference["outputs"]["spatial"]
    assert heatmap.shape == (3, 1, 64, 64) and inout_logit.shape == (3,)
    assert_close(heatmap, expected["heatmap"], "spatial heatmaps")
    assert_close(inout_logit, expected["inout_logit"], "spatial in/out logits")
    assert (expected["heatmap"][0] - expected["heatmap"][1]).abs().max() > 0.1  # the people differ


@pytest.fixture(scope="module")
def temporal_model(reference, tmp_path_factory):
    path = chong_file(reference, "spatiotemporal", tmp_path_factory.mktemp("chong") / "model_videoatttarget.pt")
    peer = read_peer_file(path)
    assert peer.kind == "chong_spatiotemporal" and peer.details["num_lstm_layers"] == 2
    return build_chong(path)


@pytest.mark.parametrize("feeding, batch_size", [("together", 16), ("alone", 1)])
def test_spatiotemporal_model_equals_chongs_video_evaluation(reference, temporal_model, feeding, batch_size):
    assert isinstance(temporal_model, ChongSpatioTemporal) and temporal_model.convlstm.num_layers == 2
    with torch.no_grad():
        results = run_tracks(temporal_model, recipe.chong_tracks(), chunk_size=3, batch_size=batch_size)
    for track, ((heatmap, inout_logit), expected) in enumerate(zip(results, reference["outputs"][
            f"spatiotemporal_{feeding}"])):
        assert heatmap.shape == expected["heatmap"].shape
        assert_close(heatmap, expected["heatmap"], f"track {track} ({feeding}) heatmaps")
        assert_close(inout_logit, expected["inout_logit"], f"track {track} ({feeding}) in/out logits")


def test_the_hidden_state_and_the_single_frame_rule_matter(reference, temporal_model):
    """In Chong's numbers, the second track alone ends with a one-frame call (BatchNorms skipped), which changes its
    last frame and nothing before it; and the frames of a track's second call depend on the state carried from its
    first (run_tracks reproduces them above; started from zeros they differ)."""
    together = reference["outputs"]["spatiotemporal_together"][1]
    alone = reference["outputs"]["spatiotemporal_alone"][1]
    assert (together["heatmap"][:3] - alone["heatmap"][:3]).abs().max() < TOLERANCE
    assert (together["inout_logit"][3] - alone["inout_logit"][3]).abs() > 1.0
    frames = {key: value[3:5] for key, value in recipe.chong_tracks()[0].items()}
    with torch.no_grad():
        restarted, _, _ = temporal_model(frames["image"], frames["head_channel"], frames["face"], None, [1, 1])
    assert (restarted - reference["outputs"]["spatiotemporal_alone"][0]["heatmap"][3:5]).abs().max() > 1e-3


def test_a_spatial_model_starts_the_spatiotemporal_one(spatial_file):
    """Chong's temporal training starts from spatial weights (initial_weights_for_temporal_training.pt): every
    spatial tensor loads; the ConvLSTM and `bn_ds` keep their initialisation and are reported missing."""
    model = ChongSpatioTemporal()
    report = load_chong_starting_weights(model, spatial_file)
    assert any(key.startswith("convlstm.") for key in report.missing)
    assert any(".bn_ds." in key for key in report.missing)
    assert not [key for key in report.missing if not (key.startswith("convlstm.") or ".bn_ds." in key or
                                                      key.endswith("positional_encoding.inv_freq"))]
    loaded = dict(model.named_parameters())["heatmap_decoder.conv4.weight"]
    assert torch.equal(loaded, recipe.weight("conv4.weight", (1, 1, 1, 1)) * 0.05)
