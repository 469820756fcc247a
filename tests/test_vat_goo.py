"""VideoAttentionTarget and GOO loaders on their real formats, the synthetic generators of both, and depth maps.

The VAT tests read the real test annotations (shared/data/videoattentiontarget/test.csv, flattened by the publisher)
re-split into the per-person files of the release, and draw frames only for one clip to keep them fast.
"""
import csv
import math
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.base import MAX_GAZE_POINTS
from datasets.gazefollow import GazeFollow
from datasets.goo import GOO, synthesised_head_box
from datasets.synthetic import generate_gazefollow
from datasets.synthetic import main as synthetic_main
from datasets.synthetic_formats import generate_goo, generate_videoattentiontarget, write_depth_maps
from datasets.transforms import (
    Annotation, AugmentParams, apply_augmentation, apply_geometry, depth_tensor,
)
from datasets.videoattentiontarget import VideoAttentionTarget, smooth_track
from tests.conftest import SHARED

VAT_CSV = SHARED / "data" / "videoattentiontarget" / "test.csv"
REAL_PERSON_FRAMES, REAL_OUT_OF_FRAME, REAL_FRAMES, REAL_SHOWS = 31_978, 11_323, 13_127, 10
SIZE = 32


def split_into_person_files(csv_path: Path, root: Path, split: str = "test") -> dict:
    """Re-split the flattened CSV into annotations/<split>/<show>/<clip>/sNN.txt.

    The publisher concatenated the person files clip by clip, each track in frame order with no gaps: within a
    clip a new person starts where the frame number stops increasing. Returns {(show, clip): [rows per person]}.
    """
    persons = defaultdict(list)
    last_key, last_frame = None, None
    with open(csv_path, newline="") as handle:
        for row in csv.reader(handle):
            show, clip, frame = row[0].split("/")
            number = int(Path(frame).stem)
            if (show, clip) != last_key or number <= last_frame:
                persons[(show, clip)].append([])
            persons[(show, clip)][-1].append([frame, *row[1:]])
            last_key, last_frame = (show, clip), number
    for (show, clip), tracks in persons.items():
        folder = root / "annotations" / split / show / clip
        folder.mkdir(parents=True, exist_ok=True)
        for number, track in enumerate(tracks):
            (folder / f"s{number:02d}.txt").write_text("".join(",".join(r) + "\n" for r in track))
    return persons


@pytest.fixture(scope="module")
def real_vat(tmp_path_factory):
    if not VAT_CSV.is_file():
        pytest.skip(f"real VideoAttentionTarget annotations not found at {VAT_CSV}")
    root = tmp_path_factory.mktemp("vat_real")
    persons = split_into_person_files(VAT_CSV, root)
    # Frames for the first 12 frames of the first clip only, at a size holding every coordinate of that clip.
    (show, clip), tracks = next(iter(persons.items()))
    rows = [row for track in tracks for row in track]
    width = max(1280, math.ceil(max(float(r[3]) for r in rows)) + 1)
    height = max(720, math.ceil(max(float(r[4]) for r in rows)) + 1)
    frames = sorted({r[0] for r in rows})[:12]
    for frame in frames:
        path = root / "images" / show / clip / frame
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), (80, 100, 120)).save(path, quality=50)
    return root, persons, (show, clip), frames, (width, height)


def test_real_vat_test_split_counts(real_vat):
    root, persons, *_ = real_vat
    dataset = VideoAttentionTarget(root, "test", input_size=SIZE, output_size=16)
    labels = dataset.inout_labels()
    assert len(dataset) == REAL_PERSON_FRAMES
    assert int((labels == 0).sum()) == REAL_OUT_OF_FRAME
    assert len(set(dataset._paths.tolist())) == REAL_FRAMES
    assert len({path.split("/")[0] for path in dataset._paths.tolist()}) == REAL_SHOWS
    assert sum(len(tracks) for tracks in persons.values()) == len(dataset._annotation_names)


def oracle_smoothing(values: np.ndarray, window: int = 11) -> np.ndarray:
    """Each row's mean over the `window` rows centred on it, indices outside the track clamped to its ends."""
    half, last = window // 2, len(values) - 1
    return np.array([np.mean([values[min(max(i + k, 0), last)] for k in range(-half, half + 1)], axis=0)
                     for i in range(len(values))])


def test_smoothing_is_the_centred_edge_padded_11_frame_average():
    track = np.array([[0.0, 10.0], [11.0, 10.0], [0.0, 10.0], [0.0, 40.0]])
    expected = oracle_smoothing(track)
    np.testing.assert_allclose(smooth_track(track), expected)
    # First row: six copies of row 0 (itself and the five padded before it), rows 1-3, two more copies of row 3.
    assert expected[0][0] == pytest.approx(11.0 / 11)
    assert expected[0][1] == pytest.approx((6 * 10 + 10 + 10 + 40 + 2 * 40) / 11)
    rng = np.random.default_rng(0)
    for length in (1, 5, 11, 40):
        values = rng.normal(size=(length, 4))
        np.testing.assert_allclose(smooth_track(values), oracle_smoothing(values))


def test_real_vat_samples_use_smoothed_boxes_box_centre_eyes_and_pixel_gaze(real_vat):
    root, persons, (show, clip), frames, (width, height) = real_vat
    smoothed = VideoAttentionTarget(root, "test", input_size=SIZE, output_size=16)
    raw = VideoAttentionTarget(root, "test", input_size=SIZE, output_size=16, smooth_head_boxes=False)
    track = np.array([[float(v) for v in row[1:]] for row in persons[(show, clip)][0]])
    first = [i for i in range(len(smoothed)) if smoothed.where(i).endswith(f"{show}/{clip}/s00.txt:1")][0]
    np.testing.assert_allclose(smoothed._head_boxes[first : first + len(track)], oracle_smoothing(track[:, :4]))
    np.testing.assert_allclose(raw._head_boxes[first : first + len(track)], track[:, :4])
    for index in range(first, first + len(frames)):
        row = track[index - first]
        sample = smoothed[index]
        box = smoothed._head_boxes[index]
        assert sample["path"] == f"{show}/{clip}/{frames[index - first]}"
        assert sample["image_size"].tolist() == [width, height]
        scale = torch.tensor([width, height], dtype=torch.float64)
        torch.testing.assert_close(sample["eye_point"].double(), torch.tensor((box[:2] + box[2:]) / 2) / scale,
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(sample["head_box"].double(), torch.tensor(box) / scale.repeat(2), rtol=0, atol=1e-6)
        if row[4] == -1 and row[5] == -1:
            assert sample["inout"] == 0 and sample["heatmap"].sum() == 0 and (sample["gaze_points"] == -1).all()
        else:
            assert sample["inout"] == 1
            torch.testing.assert_close(sample["gaze_points"][0].double(), torch.tensor(row[4:6]) / scale,
                                       rtol=0, atol=1e-6)
            assert (sample["gaze_points"][1:] == -1).all()


def test_vat_training_keeps_every_kth_frame_and_the_test_split_every_frame(real_vat, tmp_path):
    root, persons, *_ = real_vat
    train_root = tmp_path / "vat"
    (train_root / "annotations").mkdir(parents=True)
    (train_root / "annotations" / "train").symlink_to(root / "annotations" / "test")
    lengths = [len(track) for tracks in persons.values() for track in tracks]
    for step in (1, 5):
        dataset = VideoAttentionTarget(train_root, "train", frame_step=step, augment=False)
        assert len(dataset) == sum(math.ceil(n / step) for n in lengths)
    with pytest.raises(ValueError, match="every frame"):
        VideoAttentionTarget(root, "test", frame_step=5)


def test_vat_errors_name_the_file_and_line(tmp_path):
    folder = tmp_path / "annotations" / "test" / "Show" / "1_3"
    folder.mkdir(parents=True)
    (folder / "s00.txt").write_text("00000001.jpg,1,2,3,4,5,6\n00000002.jpg,1,2,3,4,5\n")
    with pytest.raises(ValueError, match=r"s00.txt:2: expected 7 comma-separated fields"):
        VideoAttentionTarget(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no per-person annotation files"):
        VideoAttentionTarget(tmp_path, "train")
    (folder / "s00.txt").write_text("00000001.jpg,1,2,30,40,-1,-1\n")
    with pytest.raises(FileNotFoundError, match=r"00000001.jpg: image of the annotation at .*s00.txt:1"):
        VideoAttentionTarget(tmp_path, "test")[0]


@pytest.fixture(scope="module")
def synthetic_vat(tmp_path_factory):
    root = tmp_path_factory.mktemp("vat_synthetic")
    summary = generate_videoattentiontarget(root, n_train_clips=2, n_test_clips=1, frames_per_clip=8, seed=3)
    return root, summary


def test_synthetic_vat_clips_have_moving_heads_shifting_targets_and_out_of_frame_frames(synthetic_vat):
    root, summary = synthetic_vat
    for split in ("train", "test"):
        dataset = VideoAttentionTarget(root, split, input_size=SIZE, output_size=16, smooth_head_boxes=False)
        assert len(dataset) == summary[split]["person_frames"]
        assert int((dataset.inout_labels() == 0).sum()) == summary[split]["out_of_frame"] > 0
    dataset = VideoAttentionTarget(root, "train", input_size=SIZE, output_size=16, smooth_head_boxes=False)
    tracks = defaultdict(list)
    for index in range(len(dataset)):
        tracks[dataset._annotation_ids[index]].append(index)
    moved = shifted = 0
    for indices in tracks.values():
        boxes = dataset._head_boxes[indices]
        moved += np.abs(boxes[-1] - boxes[0]).max() > 1
        points = {tuple(dataset.sample_gaze_points(i)[0]) for i in indices if dataset._inout[i] == 1}
        shifted += len(points) > 1
    assert moved >= 1 and shifted >= 1
    sample = dataset[0]
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["gaze_points"].shape == (MAX_GAZE_POINTS, 2)


def test_synthetic_vat_depth_maps_are_read_with_the_samples(synthetic_vat):
    root, _ = synthetic_vat
    written = write_depth_maps(root, "videoattentiontarget")
    assert written == len(list((root / "images").rglob("*.jpg")))
    dataset = VideoAttentionTarget(root, "test", input_size=SIZE, output_size=16, depth=True)
    sample = dataset[1]
    with Image.open(root / "depths" / sample["path"]) as depth:
        torch.testing.assert_close(sample["depth"], depth_tensor(depth, SIZE))
    assert sample["depth"].shape == (3, SIZE, SIZE) and 0 <= sample["depth"].min() <= sample["depth"].max() <= 1


# --- GOO --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_goo(tmp_path_factory):
    root = tmp_path_factory.mktemp("goo") / "goo_real"
    summary = generate_goo(root, "real", n_train_images=4, n_test_images=3, seed=1)
    return root, summary


def test_goo_coordinates_are_on_the_640x480_scale_whatever_the_image_size(synthetic_goo):
    root, summary = synthetic_goo
    with open(root / "testrealhumansNew.pickle", "rb") as handle:
        records = pickle.load(handle)
    dataset = GOO(root, "test", input_size=SIZE, output_size=16)
    assert len(dataset) == summary["test"]["records"] == 3
    for index, record in enumerate(records):
        sample = dataset[index]
        assert sample["image_size"].tolist() == [320, 180]  # not 640 x 480: the scale is not the image size
        assert sample["path"] == record["filename"].replace("\\", "/")
        eye = np.array([record["hx"] / 640, record["hy"] / 480])
        torch.testing.assert_close(sample["eye_point"].double(), torch.tensor(eye), rtol=0, atol=1e-6)
        gaze = torch.tensor([record["gaze_cx"] / 640, record["gaze_cy"] / 480], dtype=torch.float64)
        torch.testing.assert_close(sample["gaze_points"][0].double(), gaze, rtol=0, atol=1e-6)
        assert sample["inout"] == 1
        # eye +- 0.15, clamped to the image, then each side moved out by 10 % of the box size; clamped again.
        box = np.clip(np.concatenate([eye - 0.15, eye + 0.15]), 0, 1)
        side = box[2:] - box[:2]
        box = np.clip(np.concatenate([box[:2] - 0.1 * side, box[2:] + 0.1 * side]), 0, 1)
        np.testing.assert_allclose(np.clip(synthesised_head_box(eye), 0, 1), box)
        torch.testing.assert_close(sample["head_box"].double(), torch.tensor(box), rtol=0, atol=1e-6)


def test_goo_skips_the_known_corrupt_real_image_with_a_message(synthetic_goo, tmp_path, capsys):
    root, _ = synthetic_goo
    with open(root / "oneshotrealhumansNew.pickle", "rb") as handle:
        records = pickle.load(handle)
    corrupt = dict(records[0], filename="15\\cam1\\cam00001_img00530.jpg")
    with open(tmp_path / "train.pickle", "wb") as handle:
        pickle.dump(records + [corrupt], handle)
    dataset = GOO(root, "train", annotation_file=tmp_path / "train.pickle")
    assert len(dataset) == len(records) and dataset.skipped == ["15/cam1/cam00001_img00530.jpg"]
    assert "skipped 1 record(s) of the known corrupt GOO-real image" in capsys.readouterr().err
    del records[1]["hx"]
    with open(tmp_path / "bad.pickle", "wb") as handle:
        pickle.dump(records, handle)
    with pytest.raises(ValueError, match=r"bad.pickle: record 1 lacks the keys \['hx'\]"):
        GOO(root, "train", annotation_file=tmp_path / "bad.pickle")


def test_goo_synth_variant_reads_its_own_files_and_depth_from_root_depth(tmp_path):
    root = tmp_path / "goosynth"
    generate_goo(root, "synth", n_train_images=2, n_test_images=2, seed=2)
    assert (root / "goosynth_train_v2_no_segm.pkl").is_file()
    assert write_depth_maps(root, "goo") == 4
    dataset = GOO(root, "train", variant="synth", input_size=SIZE, output_size=16, depth=True)
    assert dataset.depth_path("00/cam1/x.jpg") == tmp_path / "goosynth_depth" / "00/cam1/x.jpg"
    sample = dataset[0]
    assert sample["depth"].shape == (3, SIZE, SIZE) and sample["heatmap"].max() == 1
    with pytest.raises(FileNotFoundError, match="GOO annotation pickle does not exist"):
        GOO(root, "train", variant="real")


def test_synthetic_command_line_writes_each_format_with_depth(tmp_path, capsys):
    synthetic_main(["--format", "goo", "--goo_variant", "synth", "--root", str(tmp_path / "goo"),
                    "--n_train_images", "1", "--n_test_images", "1", "--depth"])
    assert "wrote 2 depth maps" in capsys.readouterr().out
    assert len(GOO(tmp_path / "goo", "test", variant="synth", depth=True)) == 1
    synthetic_main(["--format", "videoattentiontarget", "--root", str(tmp_path / "vat"), "--n_train_clips", "1",
                    "--n_test_clips", "1", "--frames_per_clip", "4"])
    assert len(VideoAttentionTarget(tmp_path / "vat", "test")) == 4 * len(list((tmp_path / "vat").glob(
        "annotations/test/*/*/s*.txt")))


# --- depth on GazeFollow and the shared geometry ------------------------------------------------------------------------


def test_gazefollow_depth_layout_and_augmented_depth_follows_the_image(tmp_path):
    generate_gazefollow(tmp_path, n_train_images=3, n_test_images=1, seed=4)
    assert write_depth_maps(tmp_path, "gazefollow") == 4
    dataset = GazeFollow(tmp_path, "train", input_size=SIZE, output_size=16, depth=True)
    assert dataset.depth_path("train/00000000/00000001.jpg") == tmp_path / "depth/00000000/00000001.jpg"
    assert dataset.depth_path("test2/00000000/00000001.jpg") == tmp_path / "depth2/00000000/00000001.jpg"
    assert dataset[0]["depth"].shape == (3, SIZE, SIZE)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    annotation = Annotation(np.array([5.0, 5, 20, 20]), np.array([12.0, 12]), np.zeros((0, 2)))
    params = AugmentParams(box_jitter=0.1, crop_box=(3, 2, 50, 37), flip=True, colour=None)
    augmented, _ = apply_augmentation(image, annotation, params)
    assert np.array_equal(np.asarray(apply_geometry(image, params)), np.asarray(augmented))
    shutil.rmtree(tmp_path / "depth2")
    with pytest.raises(FileNotFoundError, match="depth map of the annotation"):
        GazeFollow(tmp_path, "test", depth=True)[0]
