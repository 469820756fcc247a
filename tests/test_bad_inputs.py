"""The bad-input catalogue, data side: each class of bad data given to main.py / gaze360_main.py, with the exit status
and the first line of the message it must produce (or the counted skip it must make), on tiny synthetic data.

Errors in data stop the run before its first training step with `data error: <file>:<line>: <what>` on stderr and
status 2 (datasets/validation.py). The engine-side catalogue is tests/test_bad_inputs_engine.py.
"""
import csv
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import main as main_module
import gaze360_main
from datasets.gazefollow import GazeFollow
from datasets.synthetic import generate_gazefollow
from datasets.synthetic_formats import generate_goo, generate_videoattentiontarget
from datasets.validation import REPORT_FILE, head_crop_split, validate_datasets, validate_splits
from gaze360.data import ViewSpec, gaze360_dataset, read_split_file
from gaze360.synthetic import write_gaze360
from tests.test_end_to_end import TINY

GAZE360_TINY = ["--device", "cpu", "--no_wandb", "--input_size", "24", "--num_frames", "3", "--crop_sizes", "24",
                "--batch_size", "4", "--num_workers", "0", "--backbone_layers", "1", "1", "--backbone_inplanes", "4",
                "--backbone_fc", "0", "--feature_size", "8", "--lstm_layers", "1", "--epochs", "1",
                "--magnification_deltas", "0", "4"]


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


# --- tiny datasets, written once per module and copied per case ----------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad_inputs_sources")
    generate_gazefollow(base / "gazefollow", n_train_images=3, n_test_images=1, seed=5)
    generate_videoattentiontarget(base / "vat", n_train_clips=1, n_test_clips=1, frames_per_clip=4, seed=1)
    generate_goo(base / "goo", "real", n_train_images=3, n_test_images=1, seed=2)
    write_gaze360(base / "gaze360", seed=3, tracks={"train": 2, "validation": 1, "test": 1}, frames_per_track=7,
                  sizes=(24, 24))
    return {name: base / name for name in ("gazefollow", "vat", "goo", "gaze360")}


def run_main(module, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, the first line of the error message) of an in-process run of an entry point."""
    status = module.main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(("data error:", "configuration error:"))]
    return status, (errors[0] if errors else "")


def main_argv(data: Path, out: Path, dataset: str = "gazefollow", *flags: str) -> list[str]:
    return [*TINY, "--epochs", "1", "--source_dataset", dataset, "--source_dataset_dir", str(data),
            "--output_dir", str(out), "--tag", "run", *flags]


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, table: list[list[str]]) -> None:
    path.write_text("".join(",".join(row) + "\n" for row in table))


def set_field(path: Path, line: int, column: int, value: str) -> None:
    table = rows(path)
    table[line - 1][column] = value
    write_rows(path, table)


def first_in_frame_line(path: Path) -> int:
    return next(number for number, row in enumerate(rows(path), start=1) if row[14] == "1")


def truncate(path: Path) -> None:
    """Cut the last quarter of the file (the header stays readable: a copy interrupted late)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])


# --- GazeFollow (main.py) ------------------------------------------------------------------------------------------

TRAIN, TEST = "train_annotations_release.txt", "test_annotations_release.txt"
# columns: 6-7 eye, 8-9 gaze (normalised), 10-13 head box (pixels), 14 inout
GAZEFOLLOW_CASES = {
    "nan_gaze_in_frame": (TRAIN, 8, "nan", r"{file}:{line}: gaze_point \(nan, [0-9.]+\) is not a finite number"),
    "inf_head_box": (TRAIN, 12, "inf", r"{file}:{line}: head_box \([0-9., ]+inf, [0-9.]+\) is not a finite number"),
    "gaze_outside_image_in_frame": (TRAIN, 8, "1.4",
                                    r"{file}:{line}: gaze point of an in-frame row \(1\.4, [0-9.]+\) lies outside "
                                    r"\[0, 1\] x \[0, 1\]"),
    "eye_outside_unit_square": (TRAIN, 7, "-0.25", r"{file}:{line}: eye point \([0-9.]+, -0\.25\) lies outside"),
    "head_box_without_area": (TRAIN, 12, "{x_min}", r"{file}:{line}: head box \(.*\) has no area"),
    "malformed_number": (TRAIN, 9, "north", r"{file}:{line}: field 'gaze_y' should be a number, found 'north'"),
    "inout_not_0_1_-1": (TRAIN, 14, "2", r"{file}:{line}: field 'inout' should be 1, 0 or -1, found '2'"),
    "nan_in_a_test_row": (TEST, 9, "nan", r"{file}:{line}: gaze_point \([0-9.]+, nan\) is not a finite number"),
}


@pytest.mark.parametrize("case", list(GAZEFOLLOW_CASES))
def test_gazefollow_impossible_values_stop_before_training(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    name, column, value, pattern = GAZEFOLLOW_CASES[case]
    path = data / name
    line = first_in_frame_line(path) if name == TRAIN else 2
    set_field(path, line, column, value.format(x_min=rows(path)[line - 1][10]))
    status, message = run_main(main_module, main_argv(data, tmp_path / "out"), capsys)
    assert status == 2
    assert re.fullmatch("data error: " + pattern.format(file=re.escape(str(path)), line=line) + r".*", message), message
    assert not (tmp_path / "out" / "run" / "last.pt").exists()  # nothing was trained


def test_wrong_number_of_fields_and_missing_annotation_file(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    table = rows(data / TRAIN)
    table[1] = table[1][:16]
    write_rows(data / TRAIN, table)
    status, message = run_main(main_module, main_argv(data, tmp_path / "out"), capsys)
    assert status == 2 and message.startswith(f"data error: {data / TRAIN}:2: expected 17 comma-separated fields")
    (data / TEST).unlink()
    status, message = run_main(main_module, main_argv(data, tmp_path / "out"), capsys)
    assert (status, message) == (2, f"data error: {data / TEST}: GazeFollow annotation file does not exist")


@pytest.mark.parametrize("case", ["missing_test_image", "truncated_test_image", "not_an_image_train",
                                  "head_box_outside_image"])
def test_image_problems_are_found_before_training(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    test_image = data / rows(data / TEST)[0][0]
    train_rows = rows(data / TRAIN)
    if case == "missing_test_image":
        test_image.unlink()
        expected = rf"{re.escape(str(data / TEST))}:1: the image {re.escape(str(test_image))} does not exist .*"
    elif case == "truncated_test_image":
        truncate(test_image)
        expected = rf"{re.escape(str(data / TEST))}:1: the image {re.escape(str(test_image))} is a truncated JPEG.*"
    elif case == "not_an_image_train":
        image = data / train_rows[0][0]
        image.write_bytes(os.urandom(300))
        expected = (rf"{re.escape(str(data / TRAIN))}:\d+: the image {re.escape(str(image))} is not a readable image "
                    r"\(unknown format or corrupt header\) .*")
    else:  # a head box (pixels) entirely right of its image
        line = first_in_frame_line(data / TRAIN)
        table = train_rows
        table[line - 1][10:14] = ["5000", "10", "5100", "40"]
        write_rows(data / TRAIN, table)
        expected = (rf"{re.escape(str(data / TRAIN))}:{line}: head box \(5000, 10, 5100, 40\) lies outside the "
                    rf"\d+ x \d+ image .*")
    status, message = run_main(main_module, main_argv(data, tmp_path / "out"), capsys)
    assert status == 2
    assert re.fullmatch(f"data error: {expected}", message), message
    report = rows(tmp_path / "out" / "run" / REPORT_FILE)
    assert report[0] == ["split", "action", "where", "problem"] and report[1][1] == "error"


def test_counted_skips_are_listed_in_the_run_folder(sources, tmp_path, capsys):
    """Duplicated train rows, a repeated annotator row and (with --invalid_annotations skip) a NaN row are left out,
    counted and listed in data_validation.csv; the run trains."""
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    train = rows(data / TRAIN)
    nan_line = first_in_frame_line(data / TRAIN)
    train[nan_line - 1][8] = "nan"
    write_rows(data / TRAIN, train + [train[-1]])  # the last row twice
    test = rows(data / TEST)
    write_rows(data / TEST, test + [test[0]])  # the first annotator row repeated
    status, message = run_main(main_module, main_argv(data, tmp_path / "out"), capsys)
    assert status == 2 and message.startswith(f"data error: {data / TRAIN}:{nan_line}: gaze_point (nan")

    status, message = run_main(main_module, main_argv(data, tmp_path / "out", "gazefollow", "--invalid_annotations",
                                                      "skip"), capsys)
    assert (status, message) == (0, "")
    report = [row for row in rows(tmp_path / "out" / "run" / REPORT_FILE)[1:]]
    assert sorted((split, action, where) for split, action, where, _ in report) == sorted([
        ("train", "skipped", f"{data / TRAIN}:{nan_line}"),
        ("train", "skipped", f"{data / TRAIN}:{len(train) + 1}"),
        ("test", "skipped", f"{data / TEST}:{len(test) + 1}"),
    ])
    reasons = {where: reason for _, _, where, reason in report}
    assert reasons[f"{data / TRAIN}:{len(train) + 1}"] == f"exact duplicate of {data / TRAIN}:{len(train)}"
    assert reasons[f"{data / TEST}:{len(test) + 1}"] == f"exact duplicate of {data / TEST}:1"
    assert reasons[f"{data / TRAIN}:{nan_line}"].startswith("gaze_point (nan")
    # the repeated annotator point is not scored twice
    persons = GazeFollow(data, "test", input_size=32, output_size=16)
    annotators = [row for row in test if (row[0], row[6]) == (test[0][0], test[0][6])]
    assert len(persons.sample_gaze_points(0)) == len(annotators)


def test_skip_validation_reuses_the_cache_and_a_corrupt_image_later_names_its_path(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    out = tmp_path / "out"
    assert run_main(main_module, main_argv(data, out), capsys) == (0, "")
    assert len(list((out / ".data_validation").glob("*.json"))) == 1
    # A training image truncated after validation: --skip_validation trusts the cached check, so the loader finds it
    # mid-epoch -- and names the file.
    image = data / rows(data / TRAIN)[0][0]
    truncate(image)
    status, message = run_main(main_module, main_argv(data, out, "gazefollow", "--skip_validation", "--tag", "again"),
                               capsys)
    assert status == 2
    assert re.fullmatch(rf"data error: {re.escape(str(image))}: image of the annotation at .*{TRAIN}:\d+ cannot be "
                        r"decoded \(image file is truncated.*\)", message), message
    # Without --skip_validation the same image is caught before training.
    status, message = run_main(main_module, main_argv(data, out, "gazefollow", "--tag", "third"), capsys)
    assert status == 2 and message.endswith(f"the image {image} is a truncated JPEG (no end-of-image marker) "
                                            f"(listed in {out / 'third' / REPORT_FILE})")


def test_skip_validation_validates_changed_annotation_files(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    datasets = {split: GazeFollow(data, split, input_size=32, output_size=16) for split in ("train", "test")}
    first = validate_datasets(datasets, tmp_path / "run", tmp_path / "out", skip=True, progress=False)
    assert not first["cached"] and "validating them now" in capsys.readouterr().out
    assert validate_datasets(datasets, tmp_path / "run", tmp_path / "out", skip=True, progress=False)["cached"]
    assert "data validation skipped" in capsys.readouterr().out
    stat = (data / TEST).stat()
    os.utime(data / TEST, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed
    assert not validate_datasets(datasets, tmp_path / "run", tmp_path / "out", skip=True, progress=False)["cached"]


# --- VideoAttentionTarget, GOO, cross-dataset evaluation -----------------------------------------------------------


def vat_person_file(data: Path, split: str) -> Path:
    return sorted((data / "annotations" / split).glob("*/*/*.txt"))[0]


@pytest.mark.parametrize("case", ["gaze_beyond_frame", "gaze_far_negative", "nan_box", "missing_frame"])
def test_videoattentiontarget_bad_rows_and_frames(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["vat"], tmp_path / "data")
    path = vat_person_file(data, "test")
    table = rows(path)
    line = next(n for n, row in enumerate(table, start=1) if row[5] != "-1")
    frame = data / "images" / path.parent.parent.name / path.parent.name / table[line - 1][0]
    if case == "gaze_beyond_frame":
        table[line - 1][5] = "9000"
        expected = rf"{re.escape(str(path))}:{line}: in-frame gaze point \(9000, [0-9.]+\) lies outside the .* image .*"
    elif case == "gaze_far_negative":
        table[line - 1][6] = "-300"
        expected = rf"{re.escape(str(path))}:{line}: in-frame gaze point \([0-9.]+, -300\) lies left of or above .*"
    elif case == "nan_box":
        table[line - 1][3] = "nan"
        expected = rf"{re.escape(str(path))}:{line}: head_box \(.*nan.*\) is not a finite number.*"
    else:
        frame.unlink()
        expected = rf"{re.escape(str(path))}:{line}: the image {re.escape(str(frame))} does not exist.*"
        line = 1
    write_rows(path, table)
    status, message = run_main(main_module, main_argv(data, tmp_path / "out", "videoattentiontarget"), capsys)
    assert status == 2
    if case == "missing_frame":  # the first annotation naming that frame
        expected = rf"{re.escape(str(path))}:\d+: the image {re.escape(str(frame))} does not exist.*"
    assert re.fullmatch(f"data error: {expected}", message), message


def test_cross_dataset_evaluation_split_is_validated_before_training(sources, tmp_path, capsys):
    gazefollow = shutil.copytree(sources["gazefollow"], tmp_path / "gazefollow")
    vat = shutil.copytree(sources["vat"], tmp_path / "vat")
    path = vat_person_file(vat, "test")
    set_field(path, 1, 5, "inf")
    status, message = run_main(main_module, main_argv(gazefollow, tmp_path / "out", "gazefollow", "--eval_dataset",
                                                      "videoattentiontarget", "--eval_dataset_dir", str(vat)), capsys)
    assert status == 2 and message.startswith(f"data error: {path}:1: ")


@pytest.mark.parametrize("case", ["eye_outside_640x480", "unreadable_pickle", "duplicate_record"])
def test_goo_bad_records(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["goo"], tmp_path / "data")
    pickle_path = data / "oneshotrealhumansNew.pickle"
    records = pickle.loads(pickle_path.read_bytes())
    if case == "eye_outside_640x480":
        records[1]["hx"] = 700.0
        pickle_path.write_bytes(pickle.dumps(records))
    elif case == "unreadable_pickle":
        pickle_path.write_bytes(b"not a pickle")
    else:
        pickle_path.write_bytes(pickle.dumps(records + [dict(records[0])]))
    status, message = run_main(main_module, main_argv(data, tmp_path / "out", "goo"), capsys)
    if case == "duplicate_record":
        assert (status, message) == (0, "")
        report = rows(tmp_path / "out" / "run" / REPORT_FILE)[1:]
        assert report == [["train", "skipped", f"{pickle_path}: record {len(records)}",
                           f"exact duplicate of {pickle_path}: record 0"]]
        return
    assert status == 2
    expected = {"eye_outside_640x480": rf"{re.escape(str(pickle_path))}: record 1: eye point \(hx, hy\) \(700, "
                                       r"[0-9.]+\) lies outside \[0, 640\] x \[0, 480\].*",
                "unreadable_pickle": rf"{re.escape(str(pickle_path))}: not a readable GOO pickle .*"}[case]
    assert re.fullmatch(f"data error: {expected}", message), message


# --- Gaze360 (gaze360_main.py) -------------------------------------------------------------------------------------


def gaze360_argv(data: Path, out: Path, *flags: str) -> list[str]:
    return [*GAZE360_TINY, "--dataset_dir", str(data), "--output_dir", str(out), "--tag", "run", *flags]


@pytest.mark.parametrize("case", ["empty_test_file", "nan_test_row", "conflicting_test_rows", "missing_test_frame",
                                  "truncated_test_frame"])
def test_gaze360_test_split_problems_stop_before_training(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["gaze360"], tmp_path / "data")
    test_file = data / "test.txt"
    lines = test_file.read_text().splitlines(keepends=True)
    first = lines[0].split()
    frame = data / "imgs" / first[0]
    if case == "empty_test_file":
        test_file.write_text("")
        expected = rf"{re.escape(str(test_file))}: no rows \(an empty split file\)"
    elif case == "nan_test_row":
        test_file.write_text(f"{first[0]} nan 0 -1 \n" + "".join(lines[1:]))
        expected = rf"{re.escape(str(test_file))}:1: the gaze vector must have unit length, found norm nan"
    elif case == "conflicting_test_rows":
        test_file.write_text(lines[0] + f"{first[0]} 0 0 -1 \n")
        expected = rf"{re.escape(str(test_file))}:2: {re.escape(first[0])} is listed again with another gaze vector.*"
    elif case == "missing_test_frame":
        frame.unlink()
        expected = rf"missing frame: {re.escape(str(frame))} \(window of sample .*"
    else:
        truncate(frame)
        expected = rf"{re.escape(str(test_file))}: sample .*: the image {re.escape(str(frame))} is a truncated JPEG.*"
    status, message = run_main(gaze360_main, gaze360_argv(data, tmp_path / "out"), capsys)
    assert status == 2
    assert re.fullmatch(f"data error: {expected}", message), message
    assert not (tmp_path / "out" / "run" / "last.pt").exists()


def test_gaze360_duplicated_test_rows_are_counted_not_scored_twice(sources, tmp_path):
    data = shutil.copytree(sources["gaze360"], tmp_path / "data")
    test_file = data / "test.txt"
    lines = test_file.read_text().splitlines(keepends=True)
    test_file.write_text("".join(lines + lines[:1]))
    split = read_split_file(test_file)
    assert len(split.paths) == len(lines)
    assert [(s.where, s.reason) for s in split.skipped] == [
        (f"{test_file}:{len(lines) + 1}", f"exact duplicate of {test_file}:1")]
    assert np.array_equal(split.gaze, read_split_file(sources["gaze360"] / "test.txt").gaze)


def test_gaze360_counted_skips_are_listed_in_the_run_folder(sources, tmp_path):
    """A repeated test row and (with missing_frames: skip) a window with a missing frame: both listed."""
    data = shutil.copytree(sources["gaze360"], tmp_path / "data")
    lines = (data / "train.txt").read_text().splitlines(keepends=True)
    (data / "train.txt").write_text("".join(lines + lines[:1]))
    missing = data / "imgs" / lines[-1].split()[0]
    missing.unlink()
    options = dict(num_frames=3, train=False, spec=ViewSpec(24, (24,)), missing_frames="skip", seed=0)
    train = gaze360_dataset(data, "train", **options)
    validate_splits([head_crop_split("train", train)], tmp_path / "run", progress=False)
    report = rows(tmp_path / "run" / REPORT_FILE)[1:]
    assert [(split, action, where) for split, action, where, _ in report] == [
        ("train", "skipped", f"{data / 'train.txt'}:{len(lines) + 1}"),
        ("train", "skipped", f"sample {lines[-1].split()[0]}")]
    assert report[1][3] == f"missing frame {missing}"
