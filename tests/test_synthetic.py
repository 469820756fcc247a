"""The synthetic GazeFollow generator: exact release format, reproducibility, and a task only the face solves."""
import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from datasets import synthetic, synthetic_scenes
from datasets.synthetic import generate_gazefollow
from datasets.synthetic_scenes import Person

N_TRAIN, N_TEST = 14, 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_gazefollow(root, N_TRAIN, N_TEST, seed=3)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path, dataset):
    root, _ = dataset
    again = generate_gazefollow(tmp_path / "again", N_TRAIN, N_TEST, seed=3)
    for name in ("train_annotations_release.txt", "test_annotations_release.txt", "README.txt"):
        assert (root / name).read_bytes() == (Path(again["root"]) / name).read_bytes()
    for image in sorted(root.glob("t*/*/*.jpg"))[:5]:
        assert image.read_bytes() == (Path(again["root"]) / image.relative_to(root)).read_bytes()
    other = generate_gazefollow(tmp_path / "other", N_TRAIN, N_TEST, seed=4)
    assert (Path(other["root"]) / "train_annotations_release.txt").read_bytes() != (
        root / "train_annotations_release.txt"
    ).read_bytes()


def test_train_rows_have_the_17_release_fields(dataset):
    root, summary = dataset
    train = rows(root / "train_annotations_release.txt")
    assert len(train) == summary["train"]["rows"] == summary["train"]["people"]
    assert {len(row) for row in train} == {17}
    for row in train:
        path = row[0]
        assert path.startswith("train/") and len(Path(path).parent.name) == 8 and len(Path(path).stem) == 8
        width, height = image_size(root / path)
        body = [float(v) for v in row[2:6]]
        eye, gaze = [float(v) for v in row[6:8]], [float(v) for v in row[8:10]]
        head_box = [float(v) for v in row[10:14]]
        assert all(0 <= v <= 1 for v in body + eye + gaze)
        # Head boxes are in pixels: larger than 1 and (up to the detector noise) inside the image.
        assert head_box[2] > 1 and head_box[3] > 1
        assert -3 < head_box[0] < head_box[2] < width + 3 and -3 < head_box[1] < head_box[3] < height + 3
        assert head_box[0] / width < eye[0] < head_box[2] / width and head_box[1] / height < eye[1] < head_box[3] / height
        assert row[14] in {"1", "0", "-1"} and row[15] == "synthetic" and row[16].endswith(".jpg")
    inout = Counter(row[14] for row in train)
    assert inout["0"] == summary["train"]["out_of_frame"] >= 1
    assert inout["-1"] == summary["train"]["invalid"] >= 1
    assert inout["1"] == summary["train"]["in_frame"] > inout["0"]


def test_test_rows_have_16_fields_and_about_ten_annotators_per_person(dataset):
    root, summary = dataset
    test = rows(root / "test_annotations_release.txt")
    assert {len(row) for row in test} == {16}
    assert all(row[0].startswith("test2/") for row in test)
    persons = {}
    for row in test:
        persons.setdefault((row[0], row[6]), []).append(row)
    assert len(persons) == summary["test"]["people"]
    for group in persons.values():
        assert 8 <= len(group) <= 12
        # One person: same path, eye and head box on every annotator row, gaze points close but not equal.
        assert len({tuple(row[6:8] + row[10:14]) for row in group}) == 1
        gaze = np.array([[float(v) for v in row[8:10]] for row in group])
        assert len(np.unique(gaze, axis=0)) > 1 and np.linalg.norm(gaze - gaze.mean(axis=0), axis=1).max() < 0.15


def test_images_exist_vary_in_size_and_hold_several_people(dataset):
    root, summary = dataset
    images = sorted(root.glob("train/*/*.jpg")) + sorted(root.glob("test2/*/*.jpg"))
    assert len(images) == N_TRAIN + N_TEST
    sizes = {image_size(image) for image in images}
    assert len({w for w, _ in sizes}) > 5 and len({h for _, h in sizes}) > 5
    assert all(240 <= w <= 400 and 180 <= h <= 320 for w, h in sizes)
    people_per_image = Counter(row[0] for row in rows(root / "train_annotations_release.txt"))
    assert set(people_per_image) == {str(image.relative_to(root)) for image in images if "train/" in str(image)}
    assert max(people_per_image.values()) >= 2
    readme = (root / "README.txt").read_text()
    assert "seed: 3" in readme and f"{N_TRAIN} images" in readme and f"{summary['test']['rows']} annotator rows" in readme


def test_existing_dataset_is_only_replaced_with_overwrite(tmp_path):
    generate_gazefollow(tmp_path, 2, 1, seed=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_gazefollow(tmp_path, 2, 1, seed=0)
    summary = generate_gazefollow(tmp_path, 3, 1, seed=0, overwrite=True)
    assert len(list(tmp_path.glob("train/*/*.jpg"))) == 3 == summary["train"]["images"]


def test_command_line_writes_the_dataset(tmp_path, capsys):
    synthetic.main(["--root", str(tmp_path / "cli"), "--n_train_images", "3", "--n_test_images", "2", "--seed", "5"])
    assert "seed: 5" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").glob("test2/*/*.jpg"))) == 2


@pytest.mark.parametrize("seed", range(30))
def test_only_the_target_lies_on_a_gaze_ray(seed):
    # The property that makes the task well posed: within CONE_HALF_ANGLE of each person's gaze ray there is
    # exactly their target (none for people looking out of frame), which sits on the ray itself.
    rng = np.random.default_rng(seed)
    roles = ["in", "out", "in"][: 1 + seed % 3]
    width, height, people, objects = synthetic_scenes._layout(rng, roles)
    for person in people:
        on_ray = [o for o in objects if synthetic_scenes._in_cone(person, person.direction, o.centre, o.radius)]
        if person.role == "out":
            assert on_ray == [] and person.target is None
        else:
            assert on_ray == [person.target]
            offset = person.target.centre - person.centre
            assert math.isclose(math.atan2(offset[1], offset[0]) % (2 * math.pi), person.direction % (2 * math.pi))
        assert person.radius * 2 >= 0.14 * height - 1e-9


def draw_lone_head(direction: float) -> np.ndarray:
    image = Image.new("RGB", (101, 101), (128, 128, 128))
    person = Person(centre=np.array([50.5, 50.5]), radius=40.0, body_box=(0, 0, 0, 0), role="in", direction=direction)
    synthetic_scenes._draw_head(np.random.default_rng(0), ImageDraw.Draw(image), person)
    return np.asarray(image, dtype=np.float64)


def test_the_face_turns_with_the_gaze_direction():
    right, down = draw_lone_head(0.0), draw_lone_head(math.pi / 2)
    # Turning the right-looking face a quarter turn clockwise gives the down-looking face (up to rasterisation) ...
    turned = np.asarray(Image.fromarray(right.astype(np.uint8)).rotate(-90), dtype=np.float64)
    same = np.abs(turned - down).mean()
    # ... while the two faces themselves differ clearly: the direction is visible.
    different = np.abs(right - down).mean()
    assert same < 1.0 and different > 10 * same, (same, different)
