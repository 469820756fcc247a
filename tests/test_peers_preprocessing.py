"""The peers' preprocessing (datasets/peer_transforms.py) equals theirs on a real frame with its head boxes:
gazelle's `get_transform` and head maps, Chong et al.'s demo.py (tests/fixtures/peers/README.md: how the reference
numbers were computed by running their code). The stored references are every 4th pixel of each network input
plus its row and column sums (float64); the head maps and head channels whole."""
from pathlib import Path

import pytest
import torch
from PIL import Image

from datasets.peer_transforms import (chong_head_channel, chong_inputs, chong_widened_box, gazelle_head_boxes,
                                      gazelle_head_maps, gazelle_inputs)
from tests.conftest import SHARED

FIXTURE = Path(__file__).parent / "fixtures" / "peers" / "preprocess.pt"
FRAMES = SHARED / "data" / "demo_frames"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def frame(reference):
    path = FRAMES / reference["frame"]
    if not path.is_file():
        pytest.skip(f"{path} (../shared/data/demo_frames) is absent")
    return Image.open(path)


def assert_input_equal(tensor, expected_sub4, expected_sums, what):
    difference = (tensor[..., ::4, ::4] - expected_sub4).abs().max().item()
    assert difference <= TOLERANCE, f"{what}: pixels differ from the peer's by {difference:.3g}"
    for axis, name in ((-1, "rows"), (-2, "cols")):
        sums = tensor.double().sum(dim=axis)
        # a sum of 448 values: float32 round-off of the inputs' ~1e-7 each
        assert (sums - expected_sums[name]).abs().max().item() <= 1e-3, f"{what}: {name} sums differ"


def test_gazelle_preprocessing_equals_gazelles(reference, frame):
    expected = reference["gazelle"]
    assert frame.size == tuple(reference["size"])
    inputs = gazelle_inputs(frame, [*reference["boxes"], None])
    assert tuple(inputs["image"].shape) == (1, *expected["image_shape"])
    assert_input_equal(inputs["image"][0], expected["image_sub4"], expected["image_sums"], "Gaze-LLE image")
    assert inputs["head_boxes"][:3] == [tuple(box) for box in expected["normalised_boxes"]]
    assert inputs["head_boxes"][3] is None
    assert torch.equal(inputs["head_map"], expected["head_maps"])  # the box past the corner is clipped first


def test_gazelle_preprocessing_is_not_the_projects_resize(reference, frame):
    """What the test distinguishes: resizing the 8-bit frame before normalising (this project's `model_inputs`
    order) moves pixels by ~1e-2."""
    import torchvision.transforms.functional as TF

    from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
    resized_first = TF.normalize(TF.to_tensor(frame.convert("RGB").resize((448, 448), Image.Resampling.BILINEAR)),
                                 IMAGENET_MEAN, IMAGENET_STD)
    assert (resized_first[..., ::4, ::4] - reference["gazelle"]["image_sub4"]).abs().max() > 1e-2


def test_chong_preprocessing_equals_demo_py(reference, frame):
    expected = reference["chong"]
    inputs = chong_inputs(frame, reference["boxes"])
    assert [list(box) for box in inputs["head_boxes"]] == expected["widened"]  # the same float64 arithmetic
    assert inputs["image"].shape == (3, 3, 224, 224) and inputs["face"].shape == (3, 3, 224, 224)
    for person in range(3):
        assert_input_equal(inputs["image"][person], expected["image_sub4"], expected["image_sums"], "Chong frame")
        assert_input_equal(inputs["face"][person], expected["faces_sub4"][person], expected["faces_sums"][person],
                           f"Chong face crop {person}")
        rows = torch.nonzero(inputs["head_channel"][person, 0].any(dim=1)).flatten()
        cols = torch.nonzero(inputs["head_channel"][person, 0].any(dim=0)).flatten()
        found = [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1]
        assert found == expected["head_channel_boxes"][person]
        assert inputs["head_channel"][person].sum().item() == expected["head_channel_sums"][person]


def test_chong_box_rules_by_hand():
    """Widening one edge after the other; head channel truncated, clipped to 0..223, end excluded."""
    assert chong_widened_box((100, 50, 200, 150)) == pytest.approx((90.0, 40.0, 211.0, 161.0))
    channel = chong_head_channel((-10.0, 0.0, 1000.0, 99.9), (1000, 100))
    assert channel[0, :, 0].sum() == 223 and channel[0, 0].sum() == 223  # clipped to 223: the last row/column stay 0
    assert channel[0, 223].sum() == 0 and channel[0, :, 223].sum() == 0
    assert chong_head_channel((10.0, 10.0, 20.9, 20.9), (224, 224))[0].sum() == 100  # int(): 10..19
    with pytest.raises(ValueError, match="head box for every person"):
        chong_inputs(Image.new("RGB", (64, 48)), [(1, 1, 10, 10), None])


def test_gazelle_boxes_by_hand():
    assert gazelle_head_boxes([(-5, 10, 50, 200), None], (100, 100)) == [(0.0, 0.1, 0.5, 1.0), None]
    maps = gazelle_head_maps([(0.0, 0.0, 1.0, 1.0), None, (0.25, 0.5, 0.5, 0.75)])
    assert maps[0].sum() == 1024 and maps[1].sum() == 0 and maps[2].sum() == 64 and maps[2, 16, 8] == 1
    with pytest.raises(ValueError, match="head box 0"):
        gazelle_head_maps([(0.1, 0.2, 0.3)])
