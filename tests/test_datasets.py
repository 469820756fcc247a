"""The GazeFollow loader: real annotation rows, test-set grouping, cleaning, errors, sampling and reproducibility."""
import csv
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datasets import DATASETS, build_dataset
from datasets.gazefollow import MAX_GAZE_POINTS, GazeFollow, original_random_sigma
from datasets.synthetic import generate_gazefollow
from datasets.transforms import sample_augmentation, Annotation
from tests.conftest import SHARED

# Real GazeFollow-format rows (idiap/sharingan, CC BY-NC 4.0) from the shared folder beside the project.
REAL_ROWS_CANDIDATES = (SHARED / "data" / "gazefollow" / "val_annotations_new.txt",)
N_REAL_ROWS = 200
SIZE = 32  # input size used in these tests: small keeps them fast


def real_rows_file() -> Path:
    for candidate in REAL_ROWS_CANDIDATES:
        if candidate.is_file():
            return candidate
    pytest.skip(f"real GazeFollow rows not found at any of {[str(c) for c in REAL_ROWS_CANDIDATES]}")


def write_rows(path: Path, rows: list[list]) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def write_image(root: Path, relative: str, size: tuple[int, int], colour=(90, 120, 150)) -> None:
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(root / relative, quality=90)


def train_row(path, idx, eye, gaze, head_box, inout=1, body=(0.1, 0.1, 0.5, 0.8), meta="x.jpg"):
    return [path, idx, *body, *eye, *gaze, *head_box, inout, "places_top", meta]


def annotator_row(path, idx, eye, gaze, head_box, body=(0.1, 0.1, 0.5, 0.8)):
    return [path, idx, *body, *eye, *gaze, *head_box, "coco", "y.jpg"]


# --- real rows ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The first 200 real rows, with three of them marked invalid (-1) and two out of frame (0) because the real
    file has only in-frame rows; a uniform image at every path, large enough for every head box of that path."""
    root = tmp_path_factory.mktemp("real")
    with open(real_rows_file(), newline="") as handle:
        rows = [row for _, row in zip(range(N_REAL_ROWS), csv.reader(handle))]
    for line, inout in ((5, "-1"), (50, "-1"), (51, "-1"), (70, "0"), (120, "0")):
        rows[line - 1][14] = inout
    annotation_file = write_rows(root / "train_annotations_release.txt", rows)
    sizes = {}
    for row in rows:
        x_max, y_max = float(row[12]), float(row[13])
        width, height = sizes.get(row[0], (64, 64))
        sizes[row[0]] = (max(width, math.ceil(x_max) + 7), max(height, math.ceil(y_max) + 5))
    for path, size in sizes.items():
        write_image(root, path, size)
    return SimpleNamespace(root=root, rows=rows, sizes=sizes, annotation_file=annotation_file)


def test_real_rows_keep_every_row_but_the_invalid_ones(real):
    dataset = GazeFollow(real.root, "train", input_size=SIZE, augment=False)
    invalid_lines = [line for line, row in enumerate(real.rows, start=1) if row[14] == "-1"]
    assert len(invalid_lines) == 3
    assert len(dataset) == N_REAL_ROWS - len(invalid_lines)
    kept_lines = [dataset.annotation(i).line for i in range(len(dataset))]
    assert kept_lines == [line for line in range(1, N_REAL_ROWS + 1) if line not in invalid_lines]


def test_real_rows_keep_every_field_including_the_17th(real):
    dataset = GazeFollow(real.root, "train", input_size=SIZE, augment=False)
    for index in range(len(dataset)):
        annotation = dataset.annotation(index)
        row = real.rows[annotation.line - 1]
        assert annotation.path == row[0] and annotation.idx == int(row[1])
        np.testing.assert_array_equal(annotation.body_box, [float(v) for v in row[2:6]])
        np.testing.assert_array_equal(annotation.eye_point, [float(v) for v in row[6:8]])
        np.testing.assert_array_equal(annotation.gaze_points, [[float(v) for v in row[8:10]]])
        np.testing.assert_array_equal(annotation.head_box, [float(v) for v in row[10:14]])
        assert annotation.inout == int(row[14]) and annotation.source == row[15] and annotation.meta == row[16]
    assert {dataset.annotation(i).meta for i in range(len(dataset))} <= {"True", "False"}


def test_real_rows_give_samples_in_the_original_normalised_frame(real):
    dataset = GazeFollow(real.root, "train", input_size=SIZE, output_size=16, augment=False)
    for index in range(0, len(dataset), 9):
        sample = dataset[index]
        row = real.rows[dataset.annotation(index).line - 1]
        width, height = real.sizes[row[0]]
        assert sample["path"] == row[0] and sample["index"].item() == index
        assert sample["image_size"].tolist() == [width, height]
        torch.testing.assert_close(sample["eye_point"], torch.tensor([float(row[6]), float(row[7])]))
        head_box = torch.tensor([float(v) for v in row[10:14]]) / torch.tensor([width, height, width, height])
        torch.testing.assert_close(sample["head_box"], head_box)
        assert sample["inout"].item() == float(row[14] == "1")
        if row[14] == "1":
            torch.testing.assert_close(sample["gaze_points"][0], torch.tensor([float(row[8]), float(row[9])]))
            peak = divmod(int(sample["heatmap"].argmax()), 16)
            assert peak == (int(float(row[9]) * 16), int(float(row[8]) * 16)) and sample["heatmap"].max() == 1
        assert (sample["gaze_points"][1:] == -1).all()


def test_out_of_frame_samples_have_no_target_and_no_gaze_point(real):
    dataset = GazeFollow(real.root, "train", input_size=SIZE, augment=True)
    out = [i for i in range(len(dataset)) if dataset.annotation(i).inout == 0]
    assert [dataset.annotation(i).line for i in out] == [70, 120]
    for index in out:
        sample = dataset[index]
        assert sample["inout"].item() == 0.0
        assert sample["heatmap"].abs().sum() == 0 and (sample["gaze_points"] == -1).all()


def test_sample_shapes_and_types(real):
    sample = GazeFollow(real.root, "train", input_size=SIZE, output_size=16)[0]
    expected = {
        "image": ((3, SIZE, SIZE), torch.uint8), "head_mask": ((1, SIZE, SIZE), torch.uint8),
        "face": ((3, SIZE, SIZE), torch.uint8), "colour": ((3, 4), torch.float32), "heatmap": ((16, 16), torch.float32),
        "inout": ((), torch.float32), "gaze_points": ((MAX_GAZE_POINTS, 2), torch.float32),
        "eye_point": ((2,), torch.float32), "head_box": ((4,), torch.float32),
        "image_size": ((2,), torch.int64), "index": ((), torch.int64),
    }
    for name, (shape, dtype) in expected.items():
        assert tuple(sample[name].shape) == shape and sample[name].dtype == dtype, name
    assert isinstance(sample["path"], str)
    assert set(sample["head_mask"].unique().tolist()) == {0.0, 1.0}
    assert 0.0 <= sample["heatmap"].min() and sample["heatmap"].max() <= 1.0


# --- hand-written rows: cleaning and errors ---------------------------------------------------------------------------


def test_inverted_head_boxes_are_swapped_and_clamped_to_the_image(tmp_path):
    write_image(tmp_path, "train/a.jpg", (200, 100))
    write_rows(tmp_path / "train_annotations_release.txt", [
        train_row("train/a.jpg", 1, (0.5, 0.5), (0.2, 0.3), (150.0, 80.0, 90.0, 20.0)),  # x and y inverted
        train_row("train/a.jpg", 2, (0.5, 0.5), (0.2, 0.3), (-10.0, 30.0, 230.0, 140.0)),  # beyond the image
    ])
    dataset = GazeFollow(tmp_path, "train", input_size=SIZE, augment=False)
    np.testing.assert_array_equal(dataset.annotation(0).head_box, [90.0, 20.0, 150.0, 80.0])
    torch.testing.assert_close(dataset[0]["head_box"], torch.tensor([0.45, 0.2, 0.75, 0.8]))
    torch.testing.assert_close(dataset[1]["head_box"], torch.tensor([0.0, 0.3, 1.0, 1.0]))


def test_a_row_with_a_wrong_number_of_fields_names_the_file_and_line(tmp_path):
    good = train_row("train/a.jpg", 1, (0.5, 0.5), (0.2, 0.3), (10, 10, 20, 20))
    path = write_rows(tmp_path / "train_annotations_release.txt", [good, good, good[:-1]])
    with pytest.raises(ValueError, match=rf"train_annotations_release.txt:3: expected 17 .* found 16"):
        GazeFollow(tmp_path, "train")
    # A test file read as a train file (or the reverse) fails the same way instead of losing a column.
    with pytest.raises(ValueError, match=r":1: expected 16 .* found 17"):
        GazeFollow(tmp_path, "test", annotation_file=write_rows(tmp_path / "t.txt", [good]))
    bad_number = list(good)
    bad_number[8] = "north"
    write_rows(path, [good, bad_number])
    with pytest.raises(ValueError, match=r":2: field 'gaze_x' should be a number, found 'north'"):
        GazeFollow(tmp_path, "train")
    bad_inout = list(good)
    bad_inout[14] = "2"
    write_rows(path, [bad_inout])
    with pytest.raises(ValueError, match=r":1: field 'inout' should be 1, 0 or -1"):
        GazeFollow(tmp_path, "train")


def test_a_missing_image_names_the_image_and_the_annotation_line(tmp_path):
    write_image(tmp_path, "train/a.jpg", (50, 50))
    write_rows(tmp_path / "train_annotations_release.txt", [
        train_row("train/a.jpg", 1, (0.5, 0.5), (0.2, 0.3), (10, 10, 20, 20)),
        train_row("train/missing.jpg", 2, (0.5, 0.5), (0.2, 0.3), (10, 10, 20, 20)),
    ])
    dataset = GazeFollow(tmp_path, "train", input_size=SIZE)
    dataset[0]
    with pytest.raises(FileNotFoundError, match=r"missing.jpg: image of the annotation at .*release.txt:2 does not"):
        dataset[1]


def test_a_head_box_outside_the_image_names_the_annotation_line(tmp_path):
    write_image(tmp_path, "train/a.jpg", (50, 50))
    write_rows(tmp_path / "train_annotations_release.txt", [
        train_row("train/a.jpg", 1, (0.5, 0.5), (0.2, 0.3), (60, 10, 70, 20)),
    ])
    with pytest.raises(ValueError, match=r"release.txt:1 .*a.jpg.*no area"):
        GazeFollow(tmp_path, "train", input_size=SIZE, augment=False)[0]


# --- test split -----------------------------------------------------------------------------------------------------


def write_test_split(root: Path, persons: dict[tuple[str, float], list[tuple[float, float]]]) -> None:
    rows = []
    for number, ((path, eye_x), points) in enumerate(persons.items()):
        if not (root / path).exists():
            write_image(root, path, (120, 80))
        rows += [annotator_row(path, number, (eye_x, 0.3), point, (10, 5, 30, 25)) for point in points]
    write_rows(root / "test_annotations_release.txt", rows)


def test_test_rows_of_one_person_become_one_sample_with_every_point(tmp_path):
    persons = {
        ("test2/a.jpg", 0.2): [(0.6, 0.5), (0.62, 0.52), (0.58, 0.55)],
        ("test2/a.jpg", 0.7): [(0.1, 0.9), (0.12, 0.88)],  # same image, another person (another eye_x)
        ("test2/b.jpg", 0.2): [(0.5, 0.5)],
    }
    write_test_split(tmp_path, persons)
    dataset = GazeFollow(tmp_path, "test", input_size=SIZE, output_size=16)
    assert len(dataset) == 3
    for index, points in enumerate(persons.values()):
        sample = dataset[index]
        torch.testing.assert_close(sample["gaze_points"][: len(points)], torch.tensor(points))
        assert (sample["gaze_points"][len(points):] == -1).all()
        assert sample["inout"].item() == 1.0
        # The target is drawn at the annotators' mean point.
        mean = np.mean(points, axis=0)
        assert divmod(int(sample["heatmap"].argmax()), 16) == (int(mean[1] * 16), int(mean[0] * 16))
    assert dataset[1]["eye_point"].tolist() == pytest.approx([0.7, 0.3])


def test_test_persons_with_more_than_20_annotators_are_an_error(tmp_path):
    write_test_split(tmp_path, {("test2/a.jpg", 0.2): [(0.5, 0.4 + 0.01 * k) for k in range(21)]})  # no repeats
    with pytest.raises(ValueError, match=r"test_annotations_release.txt:1: .* 21 annotator rows .* at most 20"):
        GazeFollow(tmp_path, "test")


def test_gaze_point_threshold_drops_only_the_far_points(tmp_path):
    rng = np.random.default_rng(0)
    tight = [tuple(p) for p in 0.5 + rng.normal(0, 0.005, size=(9, 2))]
    persons = {
        ("test2/a.jpg", 0.2): tight + [(0.95, 0.95)],  # one annotator far from the others
        ("test2/b.jpg", 0.2): [tuple(p) for p in 0.3 + rng.normal(0, 0.005, size=(10, 2))],
    }
    write_test_split(tmp_path, persons)
    full = GazeFollow(tmp_path, "test", input_size=SIZE)
    assert [len(full.annotation(i).gaze_points) for i in range(2)] == [10, 10]
    # 20 pooled distances: the threshold is the 19th smallest (position int(0.9 * 20) = 18), so exactly the
    # farthest point goes, and that is the outlier.
    filtered = GazeFollow(tmp_path, "test", input_size=SIZE, gaze_point_threshold=0.9)
    kept = [filtered.annotation(i).gaze_points for i in range(2)]
    assert not any(np.allclose(p, (0.95, 0.95)) for p in kept[0])
    assert [len(points) for points in kept] == [9, 10]
    for person, points in zip(persons.values(), kept):
        assert all(any(np.allclose(p, q) for q in person) for p in points)  # survivors are unchanged points


def test_gaze_point_threshold_and_subsampling_belong_to_the_test_split(tmp_path):
    with pytest.raises(ValueError, match="test split only"):
        GazeFollow(tmp_path, "train", gaze_point_threshold=0.5)
    with pytest.raises(ValueError, match="never augmented"):
        GazeFollow(tmp_path, "test", augment=True)
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        GazeFollow(tmp_path, "test", gaze_point_threshold=1.0)


# --- synthetic data: subsampling, determinism, workers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_gazefollow(root, n_train_images=8, n_test_images=10, seed=1)
    return root


def person_key(dataset: GazeFollow, index: int) -> tuple[str, float]:
    annotation = dataset.annotation(index)
    return annotation.path, float(annotation.eye_point[0])


def test_subsampling_keeps_whole_persons(synthetic_root):
    full = GazeFollow(synthetic_root, "test", input_size=SIZE)
    points = {person_key(full, i): len(full.annotation(i).gaze_points) for i in range(len(full))}
    half = GazeFollow(synthetic_root, "test", input_size=SIZE, subsample_test=0.5, seed=0)
    assert len(half) == round(0.5 * len(full))
    for index in range(len(half)):
        assert len(half.annotation(index).gaze_points) == points[person_key(half, index)] >= 8
    keys = [person_key(half, i) for i in range(len(half))]
    again = GazeFollow(synthetic_root, "test", subsample_test=0.5, seed=0)
    assert keys == [person_key(again, i) for i in range(len(again))]
    other = GazeFollow(synthetic_root, "test", subsample_test=0.5, seed=1)
    assert keys != [person_key(other, i) for i in range(len(other))]
    assert len(GazeFollow(synthetic_root, "test", subsample_test=1.0)) == len(full)


def test_same_epoch_and_index_give_the_same_sample_in_any_order(synthetic_root):
    dataset = GazeFollow(synthetic_root, "train", input_size=SIZE, random_sigma=(1.0, 9.0))
    dataset.set_epoch(2)
    forward = [dataset[i] for i in range(6)]
    backward = [dataset[i] for i in reversed(range(6))][::-1]
    for first, second in zip(forward, backward):
        for name in ("image", "face", "heatmap", "gaze_points", "head_box"):
            assert torch.equal(first[name], second[name])
    dataset.set_epoch(3)
    assert any(not torch.equal(forward[i]["image"], dataset[i]["image"]) for i in range(6))


def test_augmentation_follows_the_parameters_drawn_for_the_index_and_epoch(synthetic_root):
    # Find an (epoch, index) whose drawn augmentation is a flip alone: the sample must be the mirrored
    # un-augmented one (gaze x -> 1 - x, the heatmap peak in the mirrored column, the image mirrored).
    dataset = GazeFollow(synthetic_root, "train", input_size=SIZE, output_size=64, seed=5)
    plain = GazeFollow(synthetic_root, "train", input_size=SIZE, output_size=64, augment=False)
    index = next(i for i in range(len(dataset)) if dataset.annotation(i).inout == 1)
    annotation = dataset.annotation(index)
    with Image.open(synthetic_root / annotation.path) as image:
        width, height = image.size
    size = np.array([width, height])
    person = Annotation(annotation.head_box, annotation.eye_point * size, annotation.gaze_points * size)
    for epoch in range(200):
        params = sample_augmentation(np.random.default_rng([5, epoch, index]), (width, height), person)
        if params.flip and params.box_jitter is None and params.crop_box is None and params.colour is None:
            break
    else:
        pytest.fail("no flip-only augmentation in 200 epochs")
    dataset.set_epoch(epoch)
    flipped, original = dataset[index], plain[index]
    x, y = original["gaze_points"][0].tolist()
    torch.testing.assert_close(flipped["gaze_points"][0], torch.tensor([1 - x, y]))
    assert divmod(int(flipped["heatmap"].argmax()), 64) == (int(y * 64), int((1 - x) * 64))
    torch.testing.assert_close(flipped["image"], original["image"].flip(-1), atol=0.05, rtol=0)
    torch.testing.assert_close(flipped["head_mask"], original["head_mask"].flip(-1), atol=0, rtol=0)


def test_bright_pixel_at_the_gaze_point_follows_the_returned_coordinates(tmp_path):
    # An image dark everywhere but at the gaze point: over many epochs of augmentation the brightest input cell
    # stays where the returned gaze point says.
    gaze = (0.8, 0.7)
    array = np.full((150, 250, 3), 10, dtype=np.uint8)
    array[102:108, 197:203] = 255
    (tmp_path / "train").mkdir()
    Image.fromarray(array).save(tmp_path / "train" / "a.png")
    write_rows(tmp_path / "train_annotations_release.txt", [
        train_row("train/a.png", 1, (0.2, 0.2), gaze, (30, 20, 70, 60)),
    ])
    dataset = GazeFollow(tmp_path, "train", input_size=64)
    moved = set()
    for epoch in range(30):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        brightness = sample["image"].sum(dim=0)
        row, col = divmod(int(brightness.argmax()), 64)
        expected = sample["gaze_points"][0] * 64
        assert abs(col + 0.5 - expected[0]) <= 1.6 and abs(row + 0.5 - expected[1]) <= 1.6, epoch
        moved.add((row, col))
    assert len(moved) > 3  # the augmentations did move the point


def test_random_sigma_widens_the_training_target(synthetic_root):
    index = next(i for i in range(8) if GazeFollow(synthetic_root, "train").annotation(i).inout == 1)
    fixed = GazeFollow(synthetic_root, "train", augment=False, input_size=SIZE, heatmap_sigma=1.0)[index]
    wide = GazeFollow(synthetic_root, "train", augment=False, input_size=SIZE, random_sigma=(6.0, 8.0))[index]
    assert wide["heatmap"].sum() > 20 * fixed["heatmap"].sum()
    draws = {original_random_sigma(np.random.default_rng(seed)) for seed in range(200)}
    assert draws == {7, 8, 9, 10}


def test_a_two_worker_loader_returns_the_same_batches_as_the_main_process(synthetic_root):
    dataset = GazeFollow(synthetic_root, "train", input_size=SIZE, random_sigma=(2.0, 5.0))
    pickle.loads(pickle.dumps(dataset))  # workers receive a copy
    dataset.set_epoch(4)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers)
        batches[workers] = list(loader)
    for single, multi in zip(batches[0], batches[2]):
        assert single["path"] == multi["path"]
        for name, value in single.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, multi[name]), name


# --- registry -------------------------------------------------------------------------------------------------------


def options(root, **changes) -> SimpleNamespace:
    values = dict(
        source_dataset="gazefollow", source_dataset_dir=str(root), input_size=SIZE, output_size=16,
        random_flag=False, random_sigma=3.0, gaze_point_threshold=0.0, test_subsample_fraction=0.0, seed=0,
    )
    values.update(changes)
    return SimpleNamespace(**values)


def test_build_dataset_reads_the_project_options(synthetic_root):
    assert DATASETS["gazefollow"] is GazeFollow
    train = build_dataset(options(synthetic_root), "train")
    assert train.split == "train" and train.augment and train.input_size == SIZE and train.output_size == 16
    assert train.heatmap_sigma == 3.0 and train.random_sigma is None
    assert build_dataset(options(synthetic_root, random_flag=True), "train").random_sigma is original_random_sigma
    test = build_dataset(options(synthetic_root, random_sigma=2.0), "test")
    assert test.split == "test" and not test.augment and test.heatmap_sigma == 2.0
    for fraction in (0.0, 1.0):
        assert len(build_dataset(options(synthetic_root, test_subsample_fraction=fraction), "test")) == len(test)
    assert len(build_dataset(options(synthetic_root, test_subsample_fraction=0.5), "test")) == round(len(test) / 2)
    no_seed = options(synthetic_root)
    del no_seed.seed
    assert build_dataset(no_seed, "train").seed == 0


def test_build_dataset_refuses_unknown_datasets(synthetic_root):
    assert sorted(DATASETS) == ["gazefollow", "goo", "videoattentiontarget"]
    with pytest.raises(ValueError, match="unknown source_dataset 'imagenet'"):
        build_dataset(options(synthetic_root, source_dataset="imagenet"), "train")
