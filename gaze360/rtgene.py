"""RT-GENE: label files, face-crop variants and the 3-fold subject protocol (datasets.md).

Subjects s000_glasses .. s016_glasses, each with `label_combined.txt` lines
`idx, [head_phi, head_theta], [gaze_phi, gaze_theta], timestamp` (phi = yaw, theta = pitch, radians) and face crops
`<FACE_FOLDERS[face]>/face_%06d_rgb.png`: original/face_before_inpainting (the larger crops the original trainer
used by default), inpainted/face, original/face. RT-GENE's own vector convention differs from
Gaze360's by the sign of x and y (a 180 deg rotation about z), so converting both prediction and label with
Gaze360's yaw_pitch_to_gaze gives the same angular errors.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from datasets.errors import DataError, MissingDataFile
from gaze360.data import HeadCropDataset, yaw_pitch_to_gaze

FOLDS = ((1, 2, 8, 10), (3, 4, 7, 9), (5, 6, 11, 12, 13))  # test on one, train on the other two
VALIDATION_SUBJECTS = (0, 14, 15, 16)  # always the validation set
FACE_FOLDERS = {"face_before_inpainting": "original/face_before_inpainting", "inpainted": "inpainted/face",
                "original": "original/face"}
_NUMBER = r"\s*([-+0-9.eE]+)\s*"
LABEL_LINE = re.compile(rf"^\s*(\d+)\s*,\s*\[{_NUMBER},{_NUMBER}\]\s*,\s*\[{_NUMBER},{_NUMBER}\]\s*,{_NUMBER}$")


def read_labels(path: str | Path) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(image indices, head (yaw, pitch) [N, 2], gaze (yaw, pitch) [N, 2]) of one label_combined.txt."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataFile(f"RT-GENE label file not found: {path}")
    indices, head, gaze = [], [], []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = LABEL_LINE.match(line)
        if match is None:
            raise DataError(f"{path}:{line_number}: expected 'idx, [head_phi, head_theta], [gaze_phi, gaze_theta], "
                             f"timestamp', found {line!r}")
        try:
            values = [float(v) for v in match.groups()[1:5]]
        except ValueError:
            raise DataError(f"{path}:{line_number}: angles must be numbers, found {line!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}:{line_number}: angles must be finite numbers, found {line!r}")
        indices.append(int(match[1]))
        head.append(values[:2])
        gaze.append(values[2:])
    return indices, np.array(head).reshape(-1, 2), np.array(gaze).reshape(-1, 2)


def fold_subjects(fold: int) -> dict[str, tuple[int, ...]]:
    """Subjects of each split for test fold 1, 2 or 3."""
    if fold not in (1, 2, 3):
        raise ValueError(f"RT-GENE fold must be 1, 2 or 3, found {fold}")
    train = tuple(s for k, subjects in enumerate(FOLDS, start=1) if k != fold for s in subjects)
    return {"train": train, "validation": VALIDATION_SUBJECTS, "test": FOLDS[fold - 1]}


def rtgene_dataset(root: str | Path, subjects, face: str = "face_before_inpainting", **kwargs) -> HeadCropDataset:
    """The face crops of `subjects` as a HeadCropDataset (single frames); kwargs as HeadCropDataset."""
    root = Path(root)
    files, gaze, names = [], [], []
    for subject in subjects:
        folder = root / f"s{subject:03d}_glasses"
        indices, _, gaze_angles = read_labels(folder / "label_combined.txt")
        files += [[folder / FACE_FOLDERS[face] / f"face_{index:06d}_rgb.png"] for index in indices]
        gaze.append(yaw_pitch_to_gaze(gaze_angles))
        names += [f"s{subject:03d}/{index}" for index in indices]
    dataset = HeadCropDataset(files, np.concatenate(gaze), names, **kwargs)
    dataset.annotation_files = [root / f"s{subject:03d}_glasses" / "label_combined.txt" for subject in subjects]
    return dataset  # (the attribute is the cache key of datasets.validation)
