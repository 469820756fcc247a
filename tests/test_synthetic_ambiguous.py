"""The ambiguous synthetic GazeFollow data (datasets.synthetic --ambiguous_split P): the release format, seeding, the
annotators' split between the two targets, and a geometry in which the face cannot tell the two apart; and the
ordinary data unchanged when the option is off."""
import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import synthetic, synthetic_scenes
from datasets.gazefollow import GazeFollow
from datasets.synthetic import AMBIGUOUS_MODES_COLUMNS, AMBIGUOUS_MODES_FILE, generate_gazefollow

SHARE = 0.7


@pytest.fixture(scope="module")
def ambiguous(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ambiguous")
    return root, generate_gazefollow(root, 40, 16, seed=5, ambiguous_split=SHARE)


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def modes(root: Path) -> dict[tuple[str, str, str], dict]:
    with open(root / AMBIGUOUS_MODES_FILE, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == AMBIGUOUS_MODES_COLUMNS
        return {(row["split"], row["path"], row["idx"]): row for row in reader}


def point(row: dict, name: str) -> np.ndarray:
    return np.array([float(row[f"{name}_x"]), float(row[f"{name}_y"])])


def nearer_first(gaze: np.ndarray, mode: dict) -> bool:
    return np.linalg.norm(gaze - point(mode, "first")) < np.linalg.norm(gaze - point(mode, "second"))


def test_option_off_writes_the_ordinary_dataset_byte_for_byte(tmp_path):
    # sha256 of the files written by generate_gazefollow(root, 6, 3, seed=0) before the option existed (commit
    # f8406c5): the demo's data and numbers depend on them.
    expected = {
        "train_annotations_release.txt": "6f8ab904cf000868ed26f6aa566a82c08ce3043a44e2ece4d6c60af9c8e1ef45",
        "test_annotations_release.txt": "4655f15045b6354b8a09a4f04d8a32637ad5fb93390c62e9cfabfc58d431b81c",
        "README.txt": "329c2855a6e76a1efacaf6f9eb9bd6fb18cfbcf7dd38b0b83637dc5242de98e1",
    }
    summary = generate_gazefollow(tmp_path, 6, 3, seed=0)
    assert {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in expected} == expected
    assert not (tmp_path / AMBIGUOUS_MODES_FILE).exists() and "ambiguous_split" not in summary


def test_release_format_and_the_loader_reads_it(ambiguous):
    root, summary = ambiguous
    train, test = rows(root / "train_annotations_release.txt"), rows(root / "test_annotations_release.txt")
    assert {len(row) for row in train} == {17} and {len(row) for row in test} == {16}
    assert len(GazeFollow(root, "train")) == summary["train"]["in_frame"] + summary["train"]["out_of_frame"]
    dataset = GazeFollow(root, "test")
    assert len(dataset) == summary["test"]["people"]
    assert all(8 <= len(dataset.annotation(i).gaze_points) <= 12 for i in range(len(dataset)))
    # One row per in-frame person in the modes file, keyed like the annotation rows.
    written = modes(root)
    in_frame_train = {("train", row[0], row[1]) for row in train if row[14] == "1"}
    test_persons = {("test", row[0], row[1]) for row in test}
    assert set(written) == in_frame_train | test_persons
    readme = (root / "README.txt").read_text()
    assert f"ambiguous_split: {SHARE:g}" in readme and AMBIGUOUS_MODES_FILE in readme


def test_same_seed_gives_the_same_files_and_another_seed_differs(tmp_path):
    def write(name: str, seed: int = 5, share: float = SHARE) -> Path:
        generate_gazefollow(tmp_path / name, 8, 4, seed=seed, ambiguous_split=share)
        return tmp_path / name

    root, again = write("first"), write("again")
    for name in ("train_annotations_release.txt", "test_annotations_release.txt", AMBIGUOUS_MODES_FILE, "README.txt"):
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    for image in sorted(root.glob("t*/*/*.jpg")):
        assert image.read_bytes() == (again / image.relative_to(root)).read_bytes()
    assert (write("other", seed=6) / AMBIGUOUS_MODES_FILE).read_bytes() != (root / AMBIGUOUS_MODES_FILE).read_bytes()
    # The share changes who is looked at, not the scenes: the same seed at 0.5 draws the same targets.
    first = {key: (row["first_x"], row["second_x"]) for key, row in modes(root).items()}
    assert {key: (row["first_x"], row["second_x"]) for key, row in modes(write("half", share=0.5)).items()} == first


def test_test_annotators_split_in_the_stated_proportion(ambiguous):
    root, summary = ambiguous
    written = modes(root)
    persons = {}
    for row in rows(root / "test_annotations_release.txt"):
        persons.setdefault(("test", row[0], row[1]), []).append(np.array([float(v) for v in row[8:10]]))
    shares = []
    for key, gazes in persons.items():
        mode = written[key]
        n_first = sum(nearer_first(gaze, mode) for gaze in gazes)
        # Each annotator looks at the target the modes file says, and the count is P x M rounded down or up.
        assert (n_first, len(gazes) - n_first) == (int(mode["n_first"]), int(mode["n_second"]))
        assert n_first in (math.floor(SHARE * len(gazes)), math.ceil(SHARE * len(gazes)))
        shares.append(n_first / len(gazes))
    assert abs(np.mean(shares) - SHARE) < 0.05
    assert summary["test"]["first_target_rows"] == sum(int(m["n_first"]) for k, m in written.items() if k[0] == "test")


def test_training_rows_name_the_first_target_with_the_stated_probability(ambiguous):
    root, summary = ambiguous
    written = modes(root)
    firsts = []
    for row in rows(root / "train_annotations_release.txt"):
        if row[14] != "1":
            continue
        mode = written[("train", row[0], row[1])]
        first = nearer_first(np.array([float(v) for v in row[8:10]]), mode)
        assert (int(mode["n_first"]), int(mode["n_second"])) == ((1, 0) if first else (0, 1))
        firsts.append(first)
    # About 60 rows: 0.7 is 0.06 from its binomial standard deviation; 0.5 or 0.3 would be 3 to 6 deviations off.
    assert abs(np.mean(firsts) - SHARE) < 0.15 and len(firsts) == summary["train"]["in_frame"]


def test_first_annotators_rounds_so_that_the_expected_share_is_exact():
    rng = np.random.default_rng(0)
    counts = [synthetic._first_annotators(rng, 0.5, 9) for _ in range(4000)]
    assert set(counts) == {4, 5} and abs(np.mean(counts) / 9 - 0.5) < 0.01
    assert {synthetic._first_annotators(rng, 0.7, 10) for _ in range(50)} == {7}


@pytest.mark.parametrize("seed", range(20))
def test_the_face_points_exactly_between_two_equal_targets_and_nothing_else(seed):
    rng = np.random.default_rng([seed, 11])
    roles = ["in", "out"][: 1 + seed % 2] if seed % 3 else ["in", "in"]
    width, height, people, objects = synthetic_scenes._layout(rng, roles, ambiguous=True)
    low, high = synthetic_scenes.AMBIGUOUS_HALF_ANGLE_RANGE
    for person in people:
        if person.role == "out":
            assert person.target is None and person.second_target is None
            continue
        first, second = person.target, person.second_target
        assert low <= person.spread <= high and first.radius == second.radius
        angles = []
        for target in (first, second):
            offset = target.centre - person.centre
            angles.append((math.atan2(offset[1], offset[0]) - person.direction + math.pi) % (2 * math.pi) - math.pi)
        # The first target person.spread clockwise of the face direction, the second as far the other way, at the
        # same distance: mirror images about the face direction.
        assert angles == [pytest.approx(person.spread), pytest.approx(-person.spread)]
        assert np.linalg.norm(first.centre - person.centre) == pytest.approx(np.linalg.norm(second.centre
                                                                                            - person.centre))
        separation = np.linalg.norm((first.centre - second.centre) / np.array([width, height]))
        assert separation >= synthetic_scenes.AMBIGUOUS_MIN_SEPARATION
        # Nothing else in the fan that holds both, and neither target on anybody else's gaze.
        fan = [o for o in objects if synthetic_scenes._in_cone(person, person.direction, o.centre, o.radius,
                                                               person.gaze_half_angle)]
        assert {id(o) for o in fan} == {id(first), id(second)}
        for other in people:
            if other is not person:
                for target in (first, second):
                    assert not synthetic_scenes._in_cone(other, other.direction, target.centre, target.radius,
                                                         other.gaze_half_angle)


def test_in_the_written_data_the_eye_sees_the_targets_mirrored_on_either_side_of_the_face(ambiguous):
    # From the annotation alone: the eye is equally far from both targets (it lies on the face direction, their axis
    # of symmetry); seen from it they open at least the two half angles (it is nearer than the head centre); and the
    # face direction estimated from the head box centre through the eye (noisy: the box has detector noise) has the
    # first target clockwise of it and the second anticlockwise.
    root, _ = ambiguous
    written = modes(root)
    for row in rows(root / "test_annotations_release.txt"):
        mode = written[("test", row[0], row[1])]
        with Image.open(root / row[0]) as image:
            size = np.array(image.size, dtype=np.float64)
        eye = np.array([float(v) for v in row[6:8]]) * size
        box = np.array([float(v) for v in row[10:14]])
        face = math.atan2(*(eye - (box[:2] + box[2:]) / 2)[::-1])
        angles, distances = [], []
        for name in ("first", "second"):
            offset = point(mode, name) * size - eye
            angles.append(math.degrees((math.atan2(offset[1], offset[0]) - face + math.pi) % (2 * math.pi) - math.pi))
            distances.append(np.linalg.norm(offset))
        assert distances[0] == pytest.approx(distances[1], abs=0.05)  # pixels; the file keeps 5 decimals
        assert angles[0] > 0 > angles[1] and angles[0] - angles[1] > 2 * float(mode["half_angle_deg"])


def test_options_and_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        generate_gazefollow(tmp_path / "a", 2, 1, ambiguous_split=1.0)
    for argv, match in ((["--ambiguous_split", "0"], "strictly between 0 and 1"),
                        (["--format", "goo", "--ambiguous_split", "0.5"], "applies to --format gazefollow")):
        with pytest.raises(SystemExit):
            synthetic.main(["--root", str(tmp_path / "cli"), *argv])
        assert match in capsys.readouterr().err
    synthetic.main(["--root", str(tmp_path / "cli"), "--n_train_images", "2", "--n_test_images", "2",
                    "--ambiguous_split", "0.5"])
    assert "ambiguous_split: 0.5" in capsys.readouterr().out
    assert (tmp_path / "cli" / AMBIGUOUS_MODES_FILE).is_file()
    # An ordinary dataset written over an ambiguous one leaves no stale modes file behind.
    generate_gazefollow(tmp_path / "cli", 2, 1, overwrite=True)
    assert not (tmp_path / "cli" / AMBIGUOUS_MODES_FILE).exists()
