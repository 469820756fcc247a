"""Gaze360 split files, 7-frame windows, subsets and targets; the Gaze360 dataset class.

Conventions (datasets.md): gaze vectors are unit vectors in the eye coordinate system +x left, +y up, +z away from
the camera, as seen from the camera; yaw = atan2(x, -z), pitch = asin(y), both in radians; [0, 0, -1] looks into
the camera. A split row is `path gx gy gz ` with `path` = `<recording>/head/<%06d person>/<%06d frame>.jpg`
relative to `<root>/imgs/`. A sample's window is frames t-k .. t+k of the same folder (frame-number arithmetic),
or t-2k .. t (`window: last`); its label is frame t's. The window's frames and the crop list become the image
sequence of `sequence_plan`, prepared by `HeadCropDataset` (ViewSpec: the data options).
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from datasets.errors import DataError, MissingDataFile
from datasets.image_files import rgb_image
from datasets.text_files import read_text
from datasets.transforms import to_normalised_tensor
from datasets.validation import RowChecks, Skip
from gaze360.transforms import prepare_frame, zoom

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


def sincos45_target(yaw_pitch: np.ndarray) -> np.ndarray:
    """[..., 2] -> [..., 5]: the sin-cos target plus (sin, cos)(yaw + 45 deg) (the notes' extra targets)."""
    yaw_pitch = np.asarray(yaw_pitch, dtype=np.float64)
    shifted = yaw_pitch[..., 0] + math.pi / 4
    return np.concatenate([sincos_target(yaw_pitch), np.stack([np.sin(shifted), np.cos(shifted)], -1)], -1)


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
    for line_number, line in enumerate(io.StringIO(read_text(path, "Gaze360 split file"), newline=None), start=1):
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


def window_paths(path: str, num_frames: int, window: str = "centred") -> list[str]:
    """The frames of the row `path`'s window, same folder, by frame-number arithmetic: t-k .. t+k (k = num_frames
    // 2) when centred, t-(n-1) .. t when the labelled frame is the last (the original's future_prediction)."""
    match = ROW_PATH.match(path)
    if match is None:
        raise ValueError(f"not a Gaze360 frame path: {path!r}")
    frame, width = int(match["frame"]), len(match["frame"])
    offsets = range(-(num_frames // 2), num_frames // 2 + 1) if window == "centred" else range(1 - num_frames, 1)
    if frame + offsets[0] < 0:
        raise ValueError(f"{path}: frame {frame} has no {-offsets[0]} frames before it for a {num_frames}-frame "
                         f"window")
    return [f"{match['folder']}/{frame + offset:0{width}d}.jpg" for offset in offsets]


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB; a missing or unreadable file is an error naming it (never a blank image)."""
    try:
        with Image.open(path) as image:
            return rgb_image(image, path, "frame")  # 16-bit frames scaled to 8 bits; 32-bit / float refused
    except FileNotFoundError:
        raise MissingDataFile(f"missing frame: {path}") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"unreadable frame: {path} ({error})") from None


# --- dataset --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSpec:
    """How a sample's frames become its image sequence (the data options of gaze360.options; see there)."""

    input_size: int
    crops: tuple[int, ...]
    frame_crops: str = "zip"
    resize: str = "square"
    train_crop_scale: float = 1.0
    crop_size_noise: float = 0.0
    eval_random_crop_prob: float = 0.0
    eval_random_crop_size: int = 0
    magnify_frame: int = -1
    magnify_size: int = 0
    time_order: str = "forward"
    forward_bias: float = 0.7
    magnification_delta: int = 0

    @classmethod
    def from_config(cls, config, crops: list[int], magnification_delta: int = 0) -> "ViewSpec":
        names = [f for f in cls.__dataclass_fields__ if f not in ("input_size", "crops", "magnification_delta")]
        return cls(config.input_size, tuple(crops), magnification_delta=magnification_delta,
                   **{name: getattr(config, name) for name in names})


def sequence_plan(num_frames: int, num_crops: int, frame_crops: str) -> list[tuple[int, int]]:
    """(frame position in the window, crop index) of each image of the sequence. zip: image i = frame i with crop i
    (a single frame or a single crop is repeated); all: every crop of frame 0, then of frame 1, ..."""
    if frame_crops == "all":
        return [(f, c) for f in range(num_frames) for c in range(num_crops)]
    if num_frames > 1 and num_crops > 1 and num_frames != num_crops:
        raise ValueError(f"frame_crops 'zip' pairs frame i with crop i: {num_frames} frames, {num_crops} crops")
    length = max(num_frames, num_crops)
    return [(i if num_frames > 1 else 0, i if num_crops > 1 else 0) for i in range(length)]


def random_walk(num_frames: int, forward_bias: float, rng: np.random.Generator) -> list[int]:
    """Window positions visited by two walks from the centre (the original's get_random_walk_paths): the left half
    steps forward with probability 1 - forward_bias, the right half with forward_bias; each takes k steps."""
    def walk(start: int, steps: int, bias: float) -> list[int]:
        path = [start]
        for _ in range(steps):
            path.append(path[-1] + (1 if rng.random() <= bias else -1))
        return path

    middle = num_frames // 2
    return walk(middle, middle, 1.0 - forward_bias)[::-1] + walk(middle, middle, forward_bias)[1:]


class _Unreadable(Exception):
    """A frame of the sample could not be decoded (missing_frames = skip)."""


class HeadCropDataset(Dataset):
    """Samples of head crops with a 3D gaze label: images [L, 3, S, S] (the sequence of `sequence_plan`),
    `yaw_pitch` [2], `sincos` [3], `sincos45` [5], `gaze` [3], `index`.

    Shared by Gaze360 (windows of frames) and RT-GENE (single images): the subclass gives the frame files of each
    sample. With missing_frames = "skip", samples with a missing frame are dropped at construction and counted in
    `skipped` (with `skipped_examples`); with "error" the first missing frame is an error naming it.
    Each frame is decoded once per sample, however many crops of it the sequence holds. A frame that exists but
    cannot be decoded is an error naming it, or with "skip" the sample comes back as None (with a warning naming
    the file), which `collate_skipping` drops and counts in the batch's `unreadable`.
    Random draws of sample i in epoch e come from default_rng([seed, e, i]) (order- and worker-independent);
    evaluation draws (eval_random_crop_prob) from default_rng([seed, i]).
    """

    def __init__(self, frame_files: list[list[Path]], gaze: np.ndarray, names: list[str], *, train: bool,
                 spec: ViewSpec, missing_frames: str, seed: int):
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
        self.train, self.spec, self.seed, self.epoch = train, spec, seed, 0
        self.missing_frames = missing_frames
        self.plan = sequence_plan(len(self.frame_files[0]), len(spec.crops), spec.frame_crops)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.frame_files)

    def decode(self, path: Path) -> Image.Image:
        return load_rgb(path)

    def read(self, path: Path) -> Image.Image:
        """decode(path); under missing_frames = skip any failure becomes _Unreadable (the sample is skipped)."""
        try:
            return self.decode(path)
        except Exception as error:
            if self.missing_frames != "skip":
                raise
            raise _Unreadable(str(error)) from error

    def images(self, index: int, rng: np.random.Generator | None) -> torch.Tensor:
        """The [L, 3, S, S] sequence of sample `index` (rng: the sample's random draws, None = none)."""
        spec, size, plan = self.spec, self.spec.input_size, self.plan
        files = self.frame_files[index]
        if self.train and rng is not None:
            if spec.time_order == "reverse" and rng.random() < 0.5:
                plan = plan[::-1]
            elif spec.time_order == "random_walk" and len(files) > 1:
                walk = random_walk(len(files), spec.forward_bias, rng)
                plan = [(walk[f], c) for f, c in plan]
        frames = {}  # window position -> the prepared frame: each file decoded once for all of its crops
        for f in dict.fromkeys(f for f, _ in plan):
            centre_crop = size - spec.magnification_delta if spec.magnification_delta else 0
            if not self.train and spec.eval_random_crop_prob and rng is not None \
                    and rng.random() < spec.eval_random_crop_prob:
                centre_crop = spec.eval_random_crop_size
            frames[f] = prepare_frame(self.read(files[f]), size, spec.resize, rng if self.train else None,
                                      spec.train_crop_scale, centre_crop)
        views, done = [], {}
        for position, (f, c) in enumerate(plan):
            crop = spec.crops[c]
            if self.train and spec.crop_size_noise and rng is not None:
                crop = int(np.clip(round(crop + rng.normal(0.0, spec.crop_size_noise)), 8, 2 * size))
            magnify = position == spec.magnify_frame
            key = (f, crop, magnify)
            if key not in done:
                image = zoom(frames[f], spec.magnify_size, size) if magnify else frames[f]
                done[key] = to_normalised_tensor(zoom(image, crop, size), size)
            views.append(done[key])
        return torch.stack(views)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Sample `key`: an index, or an (epoch, index) pair (engine.data.EpochShuffleSampler) whose epoch overrides
        `set_epoch`'s for the augmentations."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
        else:
            rng = np.random.default_rng([self.seed, index]) if self.spec.eval_random_crop_prob else None
        try:
            images = self.images(index, rng)
        except _Unreadable as error:
            print(f"warning: skipping sample {self.names[index]}: {error}")
            return None
        yaw_pitch = self.yaw_pitch[index]
        return {
            "images": images,
            "yaw_pitch": torch.tensor(yaw_pitch, dtype=torch.float32),
            "sincos": torch.tensor(sincos_target(yaw_pitch), dtype=torch.float32),
            "sincos45": torch.tensor(sincos45_target(yaw_pitch), dtype=torch.float32),
            "gaze": torch.tensor(self.gaze[index], dtype=torch.float32),
            "index": index,
        }


def collate_skipping(samples: list[dict | None]) -> dict | None:
    """default_collate of the readable samples; `unreadable` counts the dropped ones (None: all were)."""
    readable = [sample for sample in samples if sample is not None]
    if not readable:
        return None
    batch = default_collate(readable)
    batch["unreadable"] = len(samples) - len(readable)
    return batch


def gaze360_dataset(root: str | Path, split: str, *, num_frames: int, window: str = "centred",
                    **kwargs) -> HeadCropDataset:
    """The Gaze360 `split` (train / validation / test) of `root` as a HeadCropDataset (kwargs: see its __init__)."""
    root = Path(root)
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown Gaze360 split {split!r}; expected one of {list(SPLIT_FILES)}")
    rows = read_split_file(root / SPLIT_FILES[split])
    files = [[root / "imgs" / p for p in window_paths(path, num_frames, window)] for path in rows.paths]
    dataset = HeadCropDataset(files, rows.gaze, rows.paths, **kwargs)
    dataset.annotation_files = [Path(rows.source)]  # for datasets.validation (with skipped_rows)
    dataset.skipped_rows = rows.skipped + dataset.skipped_rows
    return dataset
