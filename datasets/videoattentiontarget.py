"""VideoAttentionTarget (Chong et al. 2020): per-person annotation files of video clips, read into the shared sample path.

Layout: frames `<root>/images/<show>/<clip>/<frame>.jpg`; annotations
`<root>/annotations/{train,test}/<show>/<clip>/s<NN>.txt`, one file per tracked person, rows
`frame_file, xmin, ymin, xmax, ymax, gazex, gazey` without header, all in PIXELS of the frame. `gazex == gazey == -1`
means the target is out of frame. No eye point is annotated: the head-box centre is the eye. Depth maps (optional)
are read from `<root>/depths/<show>/<clip>/<frame>` (the RGB+depth reference's layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.base import GazeTargetDataset, RandomSigma
from datasets.errors import DataError, MissingDataFile
from datasets.text_files import csv_rows
from datasets.validation import RowChecks, print_skips, vat_row_problem

COLUMNS = ("frame", "xmin", "ymin", "xmax", "ymax", "gazex", "gazey")
SMOOTHING_WINDOW = 11  # frames of the head-box moving average of the reference (an odd number: centred)
OUT_OF_FRAME = -1.0  # gazex and gazey both equal to this mark an out-of-frame target


def smooth_track(values: np.ndarray, window: int = SMOOTHING_WINDOW) -> np.ndarray:
    """Centred moving average over the rows of one person's track, the ends padded with copies of the first and last
    row (the reference's smoothing: a `window`-frame average whatever the track length). values: (T,) or (T, K)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the smoothing window must be an odd number of frames, found {window}")
    values = np.asarray(values, dtype=np.float64)
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, axis=0), values, np.repeat(values[-1:], half, axis=0)])
    cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(padded, axis=0)])
    return (cumulative[window:] - cumulative[:-window]) / window


def read_person_file(path: Path, checks: RowChecks | None = None) -> tuple[list[str], np.ndarray, list[int]]:
    """(frame file names, (T, 6) array of xmin, ymin, xmax, ymax, gazex, gazey in pixels, the rows' line numbers) of
    one s<NN>.txt file.

    A row with another number of fields, or a number that does not parse, is an error naming the file and line; so
    is an impossible value (datasets.validation.vat_row_problem) unless `checks` skips such rows. An exact repeat of
    an earlier row is left out and recorded in `checks.skipped`.
    """
    checks = checks or RowChecks()
    frames, values, lines, rows_read = [], [], [], 0
    for line, fields in csv_rows(path, "VideoAttentionTarget annotation file"):
        if not fields:
            continue
        where = f"{path}:{line}"
        if len(fields) != len(COLUMNS):
            raise DataError(f"{where}: expected {len(COLUMNS)} comma-separated fields "
                            f"({', '.join(COLUMNS)}), found {len(fields)}")
        try:
            row = [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(f"{where}: fields {', '.join(COLUMNS[1:])} should be numbers, found "
                            f"{fields[1:]}") from None
        rows_read += 1
        if not checks.unique(tuple(fields), where) or not checks.accept(where, vat_row_problem(row)):
            continue
        values.append(row)
        frames.append(fields[0].strip())
        lines.append(line)
    if not rows_read:
        raise DataError(f"{path}: no annotation rows")
    return frames, np.array(values).reshape(-1, 6), lines


class VideoAttentionTarget(GazeTargetDataset):
    """One sample per annotated person-frame (see GazeTargetDataset.__getitem__ for its contents).

    smooth_head_boxes: replace each head box by the 11-frame centred moving average of its track (the reference does
        this in training and test); the eye is the centre of the (smoothed) box.
    frame_step (train only): keep every k-th frame of each person track (1 = every frame); the smoothing uses every
        frame first. The test split always keeps every frame (the published protocol).
    Slightly negative coordinates of an in-frame gaze point are clamped to 0, as in the reference.
    Other options: see GazeTargetDataset.
    """

    head_box_units = "pixels"
    point_units = "pixels"
    protocol = "vat"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        input_size: int = 224,
        output_size: int = 64,
        augment: bool | None = None,
        heatmap_sigma: float = 3.0,
        random_sigma: RandomSigma = None,
        seed: int = 0,
        smooth_head_boxes: bool = True,
        frame_step: int = 1,
        depth: bool = False,
        invalid_annotations: str = "error",
    ):
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, found {frame_step}")
        if split == "test" and frame_step != 1:
            raise ValueError(f"the VideoAttentionTarget test split is evaluated on every frame; frame_step "
                             f"{frame_step} applies to training only")
        self._init_sampling(split, input_size, output_size, augment, heatmap_sigma, random_sigma, seed, depth)
        self.root = Path(root)
        self.smooth_head_boxes = smooth_head_boxes
        self.frame_step = frame_step
        self.annotation_dir = self.root / "annotations" / split
        person_files = sorted(self.annotation_dir.glob("*/*/*.txt"))
        if not person_files:
            raise MissingDataFile(f"{self.annotation_dir}: no per-person annotation files "
                                    f"(<show>/<clip>/s<NN>.txt) found")
        columns = {name: [] for name in ("paths", "files", "lines", "boxes", "eyes", "points", "inout")}
        checks = RowChecks(invalid_annotations)
        for person_file in person_files:
            frames, values, lines = read_person_file(person_file, checks)
            if not frames:  # every row skipped (counted in checks.skipped)
                continue
            boxes = values[:, :4]
            # Inverted sides happen in detector boxes; swap them as for GazeFollow before averaging.
            boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
            if smooth_head_boxes:
                boxes = smooth_track(boxes)
            gaze = values[:, 4:]
            outside = (gaze[:, 0] == OUT_OF_FRAME) & (gaze[:, 1] == OUT_OF_FRAME)
            show, clip = person_file.parent.parent.name, person_file.parent.name
            for row in range(0, len(frames), frame_step):
                columns["paths"].append(f"{show}/{clip}/{frames[row]}")
                columns["files"].append(person_file)
                columns["lines"].append(lines[row])
                columns["boxes"].append(boxes[row])
                columns["eyes"].append((boxes[row, :2] + boxes[row, 2:]) / 2)
                columns["points"].append(np.zeros((0, 2)) if outside[row] else np.maximum(gaze[row:row + 1], 0.0))
                columns["inout"].append(0 if outside[row] else 1)
        self.skipped_rows = checks.skipped  # listed by datasets.validation in the run folder
        print_skips(str(self.annotation_dir), checks.skipped)
        self._store_samples(columns["paths"], columns["files"], columns["lines"], columns["boxes"], columns["eyes"],
                            columns["points"], columns["inout"])

    def image_path(self, relative: str) -> Path:
        return self.root / "images" / relative

    def depth_path(self, relative: str) -> Path:
        return self.root / "depths" / relative

    @classmethod
    def from_config(cls, config, split: str) -> "VideoAttentionTarget":
        """From the project's options: source_dataset_dir, input_size, output_size, random_sigma, random_flag, seed,
        vat_smooth_head_boxes, vat_frame_step (training only), depth_flag and invalid_annotations."""
        from datasets.gazefollow import original_random_sigma

        return cls(
            root=config.source_dataset_dir, split=split, input_size=config.input_size,
            output_size=config.output_size, heatmap_sigma=config.random_sigma, seed=getattr(config, "seed", 0),
            random_sigma=original_random_sigma if split == "train" and config.random_flag else None,
            smooth_head_boxes=config.vat_smooth_head_boxes,
            frame_step=config.vat_frame_step if split == "train" else 1, depth=config.depth_flag,
            invalid_annotations=getattr(config, "invalid_annotations", "error"),
        )
