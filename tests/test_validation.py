"""datasets/validation.py on its own: the real annotation files pass the checks (nothing impossible, no duplicates in
them), image headers catch missing / foreign / truncated files, and a corrupt image met by a DataLoader worker comes
back as one clean message naming its path."""
import csv
import io
import re

import pytest
import torch
from PIL import Image

from datasets.errors import DataError
from datasets.gazefollow import TRAIN_COLUMNS, GazeFollow, read_annotations
from datasets.synthetic import generate_gazefollow
from datasets.validation import RowChecks, image_size, vat_row_problem
from tests.conftest import SHARED

REAL = SHARED / "data"


def test_real_gazefollow_rows_pass_every_check():
    path = REAL / "gazefollow" / "val_annotations_new.txt"
    if not path.is_file():
        pytest.skip(f"real GazeFollow rows not found at {path}")
    checks = RowChecks("error")  # an impossible value would raise
    assert len(read_annotations(path, TRAIN_COLUMNS, checks)) == 4499
    assert checks.skipped == []  # no exact duplicates either


def test_real_videoattentiontarget_rows_pass_every_check():
    path = REAL / "videoattentiontarget" / "test.csv"
    if not path.is_file():
        pytest.skip(f"real VideoAttentionTarget annotations not found at {path}")
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    assert len(table) == 31_978
    assert [row for row in table if vat_row_problem([float(v) for v in row[1:]])] == []
    assert len({tuple(row) for row in table}) == len(table)


def test_a_row_problem_is_an_error_or_a_counted_skip():
    problem = vat_row_problem([10, 10, 10, 50, 3, 4])  # xmin == xmax
    assert problem == "head box (10, 10, 10, 50) has no area"
    with pytest.raises(DataError, match=r"^f.txt:3: head box \(10, 10, 10, 50\) has no area \(fix the row, or pass "
                                        r"--invalid_annotations skip"):
        RowChecks("error").accept("f.txt:3", problem)
    lenient = RowChecks("skip")
    assert not lenient.accept("f.txt:3", problem) and lenient.accept("f.txt:4", None)
    assert lenient.unique(("a", 1), "f.txt:4") and not lenient.unique(("a", 1), "f.txt:9")
    assert [(s.where, s.reason) for s in lenient.skipped] == [
        ("f.txt:3", problem), ("f.txt:9", "exact duplicate of f.txt:4")]
    # out of frame (-1, -1) is no problem; slightly negative in-frame points are clamped, far negative ones are not
    assert vat_row_problem([10, 10, 50, 50, -1, -1]) is None
    assert vat_row_problem([10, 10, 50, 50, -3, 40]) is None
    assert "left of or above the frame" in vat_row_problem([10, 10, 50, 50, -300, 40])


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_image_headers_catch_missing_foreign_and_truncated_files(tmp_path, kind):
    path = tmp_path / f"image.{kind.lower()}"
    buffer = io.BytesIO()
    Image.effect_noise((40, 30), 60).convert("RGB").save(buffer, kind)
    path.write_bytes(buffer.getvalue())
    assert image_size(path) == (40, 30)
    path.write_bytes(buffer.getvalue()[:-20])
    with pytest.raises(DataError, match=f"^is a truncated {kind}"):
        image_size(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="^is not a readable image"):
        image_size(path)
    with pytest.raises(DataError, match="^does not exist"):
        image_size(tmp_path / "absent.jpg")


def test_a_corrupt_image_met_by_a_loader_worker_names_its_path(tmp_path):
    generate_gazefollow(tmp_path, n_train_images=1, n_test_images=1, seed=2)
    dataset = GazeFollow(tmp_path, "test", input_size=32, output_size=16)
    image = dataset.image_path(str(dataset._paths[0]))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert re.fullmatch(rf"{re.escape(str(image))}: image of the annotation at .*test_annotations_release.txt:1 "
                        r"cannot be decoded \(image file is truncated.*\)", message), message


def test_depth_maps_are_checked_with_their_images(tmp_path):
    from datasets.synthetic_formats import write_depth_maps
    from datasets.validation import validate_datasets

    generate_gazefollow(tmp_path, n_train_images=2, n_test_images=1, seed=4)
    write_depth_maps(tmp_path, "gazefollow")
    train = GazeFollow(tmp_path, "train", input_size=32, output_size=16, depth=True)
    summary = validate_datasets({"train": train}, None, None, progress=False)
    assert summary["images"] == 2 * 2  # every image and its depth map
    depth_map = train.depth_path(str(train._paths[0]))
    depth_map.unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}/train_annotations_release.txt:\d+: the image "
                                        rf"{re.escape(str(depth_map))} does not exist$"):
        validate_datasets({"train": train}, None, None, progress=False)
