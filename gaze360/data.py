"""Gaze360 split files, 7-frame windows, subsets and targets; the Gaze360 dataset class.

Conventions (datasets.md): gaze vectors are unit vectors in the eye coordinate system +x left, +y up, +z away from
the camera, as seen from the camera; yaw = atan2(x, -z), pitch = asin(y), both in radians; [0, 0, -1] looks into
the camera. A split row is `path gx gy gz ` with `path` = `<recording>/head/<%06d person>/<%06d frame>.jpg`
relative to `<root>/imgs/`. A sample's window is frames t-k .. t+k of the same folder (frame-number arithmetic);
its label is the central frame's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.errors import DataError, MissingDataFile
from datasets.validation import RowChecks, Skip
from gaze360.transforms import frame_views

SPLIT_FILES = {"train": "train.txt", "validation": "validation.txt", "test": "test.txt"}
ROW_PATH = re.compile(r"^(?P<folder>[^/\s]+/head/\d+)/(?P<frame>\d+)\.jpg$")
SUBSETS = ("all_360", "front_180", "front_facing", "back")


# --- angles and targets -----------------------------------------------------------------------------------------


def gaze_to_yaw_pitch(gaze: np.ndarray) -> np.ndarray:
    """[..., 3] gaze vectors (normalised here) -> [..., 2] (yaw, pitch) radians; yaw in (-pi, pi]."""
    gaze = np.asarray(gaze, dtype=np.float64)
    gaze = gaze / np.linalg.norm(gaze, axis=-1, keepdims=True)
    yaw = np.arctan2(gaze[..., 0], -gaze[..., 2])
    pitch = np.arcsin(np.clip(gaze[..., 1], -1.0, 1.0))
    return np.stack([yaw, pitch], axis=-1)


def yaw_pitch_to_gaze(yaw_pitch):
    """[..., 2] (yaw, pitch) radians -> [..., 3] unit vectors: x = cos p sin y, y = sin p, z = -cos p cos y.
    Works on numpy arrays and torch tensors."""
    lib = torch if isinstance(yaw_pitch, torch.Tensor) else np
    yaw, pitch = yaw_pitch[..., 0], yaw_pitch[..., 1]
    return lib.stack([lib.cos(pitch) * lib.sin(yaw), lib.sin(pitch), -lib.cos(pitch) * lib.cos(yaw)], -1)


def sincos_target(yaw_pitch: np.ndarray) -> np.ndarray:
    """[..., 2] (yaw, pitch) -> [..., 3] (sin yaw, cos yaw, sin pitch): continuous across the yaw = +-pi wrap."""
    yaw_pitch = np.asarray(yaw_pitch, dtype=np.float64)
    return np.stack([np.sin(yaw_pitch[..., 0]), np.cos(yaw_pitch[..., 0]), np.sin(yaw_pitch[..., 1])], axis=-1)


def subset_masks(gaze: np.ndarray, front_facing: str = "yaw", degrees: float = 20.0) -> dict[str, np.ndarray]:
    """Boolean masks of the evaluation subsets over [N, 3] gaze vectors.

    all_360: every sample; front_180: |yaw| <= 90 deg (z <= 0); back: z > 0; front_facing: |yaw| <= degrees
    ("yaw"), and |pitch| <= degrees too ("yaw_pitch"), or within degrees of the camera direction [0, 0, -1]
    ("camera").
    """
    gaze = np.asarray(gaze, dtype=np.float64)
    gaze = gaze / np.linalg.norm(gaze, axis=-1, keepdims=True)
    yaw, pitch = np.abs(np.degrees(gaze_to_yaw_pitch(gaze))).T
    limit = degrees + 1e-9  # a value printed as exactly the threshold counts as inside
    if front_facing == "yaw":
        facing = yaw <= limit
    elif front_facing == "yaw_pitch":
        facing = (yaw <= limit) & (pitch <= limit)
    elif front_facing == "camera":
        facing = np.degrees(np.arccos(np.clip(-gaze[:, 2], -1.0, 1.0))) <= limit
    else:
        raise ValueError(f"front_facing must be 'yaw', 'yaw_pitch' or 'camera', found {front_facing!r}")
    return {"all_360": np.ones(len(gaze), dtype=bool), "front_180": gaze[:, 2] <= 0, "front_facing": facing,
            "back": gaze[:, 2] > 0}


# --- split files ----------------------------------------------------------------------------------------------------


@dataclass
class SplitRows:
    """The rows of one split file: image paths (relative to imgs/) and [N, 3] gaze vectors, in file order."""

    paths: list[str]
    gaze: np.ndarray
    source: str
    skipped: list = field(default_factory=list)  # datasets.validation.Skip of each exact repeat left out


def read_split_file(path: str | Path) -> SplitRows:
    """Parse a Gaze360 split file; a malformed row, a path listed twice with different labels or an empty file is an
    error naming the file (and line); an exact repeat of a row is left out and recorded in `skipped`."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataFile(f"Gaze360 split file not found: {path}")
    paths, gaze, checks, first_line = [], [], RowChecks(), {}
    with open(path) as stream:
        for line_number, line in enumerate(stream, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise DataError(f"{path}:{line_number}: expected 'path gx gy gz', found {len(fields)} fields: "
                                 f"{line.rstrip()!r}")
            if ROW_PATH.match(fields[0]) is None:
                raise DataError(f"{path}:{line_number}: expected a path '<recording>/head/<person>/<frame>.jpg', "
                                 f"found {fields[0]!r}")
            try:
                vector = [float(value) for value in fields[1:]]
            except ValueError:
                raise DataError(f"{path}:{line_number}: gaze components must be numbers, found {fields[1:]}") from None
            norm = math.sqrt(sum(v * v for v in vector))
            if not math.isfinite(norm) or abs(norm - 1.0) > 1e-3:
                raise DataError(f"{path}:{line_number}: the gaze vector must have unit length, found norm {norm:.6f}")
            if not checks.unique((fields[0], *vector), f"{path}:{line_number}"):
                continue
            if fields[0] in first_line:
                raise DataError(f"{path}:{line_number}: {fields[0]} is listed again with another gaze vector (first "
                                f"at line {first_line[fields[0]]})")
            first_line[fields[0]] = line_number
            paths.append(fields[0])
            gaze.append(vector)
    if not paths:
        raise DataError(f"{path}: no rows (an empty split file)")
    return SplitRows(paths, np.asarray(gaze, dtype=np.float64).reshape(-1, 3), str(path), checks.skipped)


def window_paths(path: str, num_frames: int) -> list[str]:
    """The frames t-k .. t+k (k = num_frames // 2) of the row `path`: same folder, frame number +- offset."""
    match = ROW_PATH.match(path)
    if match is None:
        raise ValueError(f"not a Gaze360 frame path: {path!r}")
    frame, width = int(match["frame"]), len(match["frame"])
    half = num_frames // 2
    if frame - half < 0:
        raise ValueError(f"{path}: frame {frame} has no {half} frames before it for a {num_frames}-frame window")
    return [f"{match['folder']}/{frame + offset:0{width}d}.jpg" for offset in range(-half, half + 1)]


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB; a missing or unreadable file is an error naming it (never a blank image)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise MissingDataFile(f"missing frame: {path}") from None
    except (OSError, SyntaxError) as error:
        raise DataError(f"unreadable frame: {path} ({error})") from None


# --- dataset --------------------------------------------------------------------------------------------------------


class HeadCropDataset(Dataset):
    """Samples of head crops with a 3D gaze label: images [L, 3, S, S] with L = num_frames x crops (frame-major:
    all crop copies of frame t-k, then of t-k+1, ...), `yaw_pitch` [2], `sincos` [3], `gaze` [3], `index`.

    Shared by Gaze360 (windows of frames) and RT-GENE (single images): the subclass gives the frame files of each
    sample. With missing_frames = "skip", samples with a missing frame are dropped at construction and counted in
    `skipped` (with `skipped_examples`); with "error" the first missing frame is an error naming it.
    Augmentation of sample i in epoch e is drawn from default_rng([seed, e, i]) (order- and worker-independent).
    """

    def __init__(self, frame_files: list[list[Path]], gaze: np.ndarray, names: list[str], *, train: bool,
                 input_size: int, crops: list[int], train_crop_scale: float, missing_frames: str, seed: int,
                 magnification_delta: int = 0):
        keep = []
        self.skipped, self.skipped_examples, self.skipped_rows = 0, [], []
        # Overlapping windows share frames: look each file up once (Gaze360's train split has ~900k window frames).
        present = {path: path.is_file() for path in {f for files in frame_files for f in files}}
        for index, files in enumerate(frame_files):
            missing = next((f for f in files if not present[f]), None)
            if missing is None:
                keep.append(index)
            elif missing_frames == "skip":
                self.skipped += 1
                self.skipped_rows.append(Skip(f"sample {names[index]}", f"missing frame {missing}"))
                if len(self.skipped_examples) < 5:
                    self.skipped_examples.append(str(missing))
            else:
                raise MissingDataFile(f"missing frame: {missing} (window of sample {names[index]}); set "
                                        f"missing_frames: skip to drop such samples (they are counted)")
        if not keep:
            raise DataError(f"no samples: {len(frame_files)} listed, {self.skipped} skipped for missing frames "
                             f"(e.g. {self.skipped_examples[:1]})")
        self.frame_files = [frame_files[i] for i in keep]
        self.gaze = np.asarray(gaze, dtype=np.float64)[keep]
        self.names = [names[i] for i in keep]
        self.yaw_pitch = gaze_to_yaw_pitch(self.gaze)
        self.train, self.input_size, self.crops = train, input_size, list(crops)
        self.train_crop_scale, self.seed, self.epoch = train_crop_scale, seed, 0
        self.magnification_delta = magnification_delta

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.frame_files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Sample `key`: an index, or an (epoch, index) pair (engine.data.EpochShuffleSampler) whose epoch overrides
        `set_epoch`'s for the augmentations."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        views = []
        for path in self.frame_files[index]:
            views += frame_views(load_rgb(path), self.input_size, self.crops, rng=rng,
                                 scale_min=self.train_crop_scale, magnification_delta=self.magnification_delta)
        yaw_pitch = self.yaw_pitch[index]
        return {
            "images": torch.stack(views),
            "yaw_pitch": torch.tensor(yaw_pitch, dtype=torch.float32),
            "sincos": torch.tensor(sincos_target(yaw_pitch), dtype=torch.float32),
            "gaze": torch.tensor(self.gaze[index], dtype=torch.float32),
            "index": index,
        }


def gaze360_dataset(root: str | Path, split: str, *, num_frames: int, **kwargs) -> HeadCropDataset:
    """The Gaze360 `split` (train / validation / test) of `root` as a HeadCropDataset (kwargs: see its __init__)."""
    root = Path(root)
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown Gaze360 split {split!r}; expected one of {list(SPLIT_FILES)}")
    rows = read_split_file(root / SPLIT_FILES[split])
    files = [[root / "imgs" / p for p in window_paths(path, num_frames)] for path in rows.paths]
    dataset = HeadCropDataset(files, rows.gaze, rows.paths, **kwargs)
    dataset.annotation_files = [Path(rows.source)]  # for datasets.validation (with skipped_rows)
    dataset.skipped_rows = rows.skipped + dataset.skipped_rows
    return dataset
