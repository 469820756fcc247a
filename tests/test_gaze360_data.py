"""Gaze360 data: the real split files (row counts, subsets), windows by frame arithmetic, targets, missing frames,
and the multi-crop transforms checked by hand."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import load_config
from gaze360.data import (
    HeadCropDataset, gaze360_dataset, gaze_to_yaw_pitch, read_split_file, sincos_target, subset_masks, window_paths,
    yaw_pitch_to_gaze,
)
from gaze360.options import GAZE360, crop_list
from gaze360.data import ViewSpec
from gaze360.transforms import center_crop_box, frame_views, multi_crop, resize_shorter, sample_resized_crop
from tests.conftest import SHARED

REAL = SHARED / "data" / "gaze360"


@pytest.fixture(scope="module")
def test_rows():
    return read_split_file(REAL / "test.txt")


def test_real_split_files_row_counts_and_subsets(test_rows):
    validation = read_split_file(REAL / "validation.txt")
    assert len(test_rows.paths) == 25_969 and len(validation.paths) == 17_038
    masks = subset_masks(test_rows.gaze)
    assert {name: int(mask.sum()) for name, mask in masks.items()} == {
        "all_360": 25_969, "front_180": 20_322, "front_facing": 5_851, "back": 5_647}
    # datasets.md: 4,619 test rows with |pitch| <= 20 too; 3,995 within 20 deg of the camera direction.
    assert subset_masks(test_rows.gaze, "yaw_pitch")["front_facing"].sum() == 4_619
    assert subset_masks(test_rows.gaze, "camera")["front_facing"].sum() == 3_995
    assert subset_masks(test_rows.gaze, "yaw", 90.0)["front_facing"].sum() == 20_322
    # the first real row: rec_022/head/000000/000131.jpg 0.453840661720333 0.057788951913994 -0.889207001100381
    assert test_rows.paths[0] == "rec_022/head/000000/000131.jpg"
    np.testing.assert_allclose(test_rows.gaze[0], [0.453840661720333, 0.057788951913994, -0.889207001100381])


def test_yaw_pitch_convention_reference_values():
    cases = {(0.0, 0.0): (0, 0, -1), (math.pi / 2, 0.0): (1, 0, 0), (-math.pi / 2, 0.0): (-1, 0, 0),
             (0.0, math.pi / 2): (0, 1, 0)}
    for yaw_pitch, vector in cases.items():
        np.testing.assert_allclose(yaw_pitch_to_gaze(np.array(yaw_pitch)), vector, atol=1e-12)
        if abs(yaw_pitch[1]) < 1:
            np.testing.assert_allclose(gaze_to_yaw_pitch(np.array(vector, dtype=float)), yaw_pitch, atol=1e-12)
    assert gaze_to_yaw_pitch(np.array([0.0, 0.0, 1.0]))[0] == pytest.approx(math.pi)  # looking away: yaw = pi
    rng = np.random.default_rng(0)
    yaw_pitch = np.stack([rng.uniform(-math.pi, math.pi, 50), rng.uniform(-1.5, 1.5, 50)], 1)
    np.testing.assert_allclose(gaze_to_yaw_pitch(yaw_pitch_to_gaze(yaw_pitch)), yaw_pitch, atol=1e-9)
    np.testing.assert_allclose(sincos_target([[math.pi / 2, -math.pi / 6]]), [[1.0, 0.0, -0.5]], atol=1e-12)
    torch.testing.assert_close(yaw_pitch_to_gaze(torch.tensor([math.pi / 2, 0.0])), torch.tensor([1.0, 0.0, 0.0]),
                               atol=1e-7, rtol=0)


def test_windows_by_frame_arithmetic():
    assert window_paths("rec_022/head/000000/000131.jpg", 7) == [
        f"rec_022/head/000000/{frame:06d}.jpg" for frame in range(128, 135)]
    assert window_paths("rec_1/head/000004/000009.jpg", 1) == ["rec_1/head/000004/000009.jpg"]
    with pytest.raises(ValueError, match="000002.jpg: frame 2 has no 3 frames before it"):
        window_paths("rec_1/head/000004/000002.jpg", 7)


@pytest.mark.parametrize("line, message", [
    ("rec_1/head/000000/000010.jpg 0 0\n", "test.txt:2: expected 'path gx gy gz', found 3 fields"),
    ("rec_1/000010.jpg 0 0 -1\n", "test.txt:2: expected a path"),
    ("rec_1/head/000000/000010.jpg 0 x -1\n", "test.txt:2: gaze components must be numbers"),
    ("rec_1/head/000000/000010.jpg 0 0 -2\n", "test.txt:2: the gaze vector must have unit length"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "test.txt"
    path.write_text("rec_1/head/000000/000009.jpg 0 0 -1 \n" + line)
    with pytest.raises(ValueError, match=message):
        read_split_file(path)


def _write_real_subset(root, rows, count, size=(12, 16)):
    """The first `count` real rows (verbatim) in a split file, with generated frames for their 7-frame windows."""
    lines = (REAL / "test.txt").read_text().splitlines(keepends=True)[:count]
    for path in rows.paths[:count]:
        for frame in window_paths(path, 7):
            target = root / "imgs" / frame
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shade = int(frame[-7:-4]) % 256
                Image.new("RGB", size, (shade, 255 - shade, 60)).save(target)
    (root / "test.txt").write_text("".join(lines))


def _kwargs(**changes):
    """gaze360_dataset keyword arguments; view options (ViewSpec fields) may be given flat."""
    view = dict(input_size=16, crops=(16, 12), frame_crops="all", train_crop_scale=0.8)
    kwargs = dict(num_frames=7, train=False, missing_frames="error", seed=0)
    for name, value in changes.items():
        if name in ViewSpec.__dataclass_fields__:
            view[name] = tuple(value) if name == "crops" else value
        else:
            kwargs[name] = value
    return {**kwargs, "spec": ViewSpec(**view)}


def test_dataset_on_real_rows_windows_labels_and_missing_frames(tmp_path, test_rows):
    _write_real_subset(tmp_path, test_rows, 4)
    dataset = gaze360_dataset(tmp_path, "test", **_kwargs())
    assert len(dataset) == 4
    sample = dataset[2]
    assert sample["images"].shape == (7 * 2, 3, 16, 16)  # 7 frames x 2 crop copies, frame-major
    np.testing.assert_allclose(sample["gaze"].numpy(), test_rows.gaze[2], rtol=1e-6)
    yaw_pitch = gaze_to_yaw_pitch(test_rows.gaze[2])
    np.testing.assert_allclose(sample["yaw_pitch"].numpy(), yaw_pitch, rtol=1e-6)
    np.testing.assert_allclose(sample["sincos"].numpy(), sincos_target(yaw_pitch), rtol=1e-6, atol=1e-7)
    # frame t-3 of row 2 is the first image; its colour encodes the frame number
    first = window_paths(test_rows.paths[2], 7)[0]
    expected_red = (int(first[-7:-4]) % 256 / 255.0 - 0.485) / 0.229
    assert sample["images"][0, 0].mean().item() == pytest.approx(expected_red, abs=0.02)

    missing = tmp_path / "imgs" / window_paths(test_rows.paths[1], 7)[6]
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"missing frame: {missing}"):
        gaze360_dataset(tmp_path, "test", **_kwargs())
    skipping = gaze360_dataset(tmp_path, "test", **_kwargs(missing_frames="skip"))
    assert skipping.skipped >= 1 and len(skipping) == 4 - skipping.skipped
    assert str(missing) in skipping.skipped_examples
    assert test_rows.paths[1] not in skipping.names


def test_training_augmentation_is_seeded_per_epoch_and_index(tmp_path, test_rows):
    _write_real_subset(tmp_path, test_rows, 2, size=(20, 20))
    for frame in (tmp_path / "imgs").rglob("*.jpg"):  # a texture so random crops differ
        Image.fromarray(np.random.default_rng(int(frame.stem)).integers(0, 255, (20, 20, 3), np.uint8)).save(frame)
    dataset = gaze360_dataset(tmp_path, "test", **_kwargs(train=True, num_frames=1, crops=[16], train_crop_scale=0.3))
    first = dataset[0]["images"]
    assert torch.equal(first, dataset[0]["images"])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["images"])


def test_resize_and_centre_crop_boxes_by_hand():
    assert resize_shorter(Image.new("RGB", (10, 20)), 5).size == (5, 10)
    assert resize_shorter(Image.new("RGB", (30, 20)), 224).size == (336, 224)
    assert center_crop_box(5, 10, 3) == (1, 4, 3, 3)  # round(3.5) = 4, round(1.0) = 1
    assert center_crop_box(224, 224, 150) == (37, 37, 150, 150)
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop_box(10, 10, 11)


def test_multi_crop_zooms_into_the_centre():
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    image.paste((255, 0, 0), (8, 8, 24, 24))  # a red centre square of side 16
    full, zoomed = multi_crop(image, [32, 16], 32)
    assert np.array_equal(np.asarray(full), np.asarray(image))
    assert (np.asarray(zoomed) == (255, 0, 0)).all()  # CenterCrop(16) is exactly the red square, resized to 32
    assert zoomed.size == (32, 32)
    views = frame_views(image, 32, [32, 16])
    assert len(views) == 2 and views[1][0].mean().item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-5)


def test_magnification_crop_and_random_resized_crop_boxes():
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    image.paste((0, 0, 255), (8, 8, 24, 24))
    view = frame_views(image, 32, [32], magnification_delta=16)[0]  # CenterCrop(16) then Resize(32): all blue
    assert view[2].mean().item() == pytest.approx((1 - 0.406) / 0.225, abs=1e-5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = sample_resized_crop(rng, 40, 30, (0.8, 1.0))
        assert 0 <= left and left + w <= 40 and 0 <= top and top + h <= 30
        assert 0.8 * 1200 - 80 <= w * h <= 1200  # area fraction in [0.8, 1] up to rounding
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    assert sample_resized_crop(rng, 50, 50, (1.0, 1.0)) == (0, 0, 50, 50)  # full area: only the whole image fits


def test_crop_lists_and_options():
    config = load_config([], {"crop_sizes": [224, 200, 175, 150], "symmetric_crops": True, "num_frames": 1},
                         GAZE360)
    assert crop_list(config) == [224, 200, 175, 150, 175, 200, 224]
    assert crop_list(config.replace(symmetric_crops=False)) == [224, 200, 175, 150]
