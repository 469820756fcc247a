"""GOO (Gaze On Objects, Tomas et al. 2021): GOO-Real and GOO-Synth pickle records, read into the shared sample path.

Each split is a pickle holding a list of dicts (`filename, width, height, ann, gaze_item, gazeIdx, gaze_cx, gaze_cy,
hx, hy, seg, occluded`, GOO-Synth adds more). Every coordinate is on a 640 x 480 scale whatever the real image size
(GOO-Real images are 1920 x 1080): eye = (hx / 640, hy / 480), gaze = (gaze_cx / 640, gaze_cy / 480), normalised.
No head box and no in/out label exist: the box is synthesised around the eye and every sample is in frame.
Images are `<root>/<filename>` (backslashes of the Windows-made pickles read as `/`); depth maps (optional)
`<root>_depth/<filename>`, the RGB+depth reference's layout.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from datasets.base import GazeTargetDataset, RandomSigma
from datasets.errors import DataError, MissingDataFile
from datasets.restricted_pickle import NUMPY_GLOBALS, PLAIN_GLOBALS, load_restricted
from datasets.transforms import widen_box
from datasets.validation import RowChecks, goo_record_problem, print_skips

COORDINATE_SCALE = (640.0, 480.0)  # width, height of the scale every GOO coordinate is given on
HEAD_HALF_SIZE = 0.15  # the synthesised head box spans eye +- 0.15 of the image size ...
HEAD_WIDEN = 0.1  # ... clamped to the image, then widened by 10 % on each side (the references' box)
ANNOTATION_FILES = {
    "real": {"train": "oneshotrealhumansNew.pickle", "test": "testrealhumansNew.pickle"},
    "synth": {"train": "goosynth_train_v2_no_segm.pkl", "test": "goosynth_test_v2_no_segm.pkl"},
}
# GOO-Real images known to be unreadable in the release; their records are skipped with a message.
CORRUPT_IMAGES = {"real": ("15/cam1/cam00001_img00530.jpg",), "synth": ()}
REQUIRED_KEYS = ("filename", "hx", "hy", "gaze_cx", "gaze_cy")
# What the release pickles are made of (datasets.md: lists of dicts of strings, numbers, lists and numpy arrays or
# scalars); a pickle naming any other Python object is refused unread (datasets/restricted_pickle.py).
PICKLE_GLOBALS = NUMPY_GLOBALS | PLAIN_GLOBALS
PICKLE_CONTENTS = "a list of dicts of strings, numbers, lists and numpy arrays"


def synthesised_head_box(eye_point: np.ndarray) -> np.ndarray:
    """The normalised head box of a GOO sample: eye +- HEAD_HALF_SIZE, clamped to [0, 1], widened by HEAD_WIDEN."""
    box = np.clip(np.concatenate([eye_point - HEAD_HALF_SIZE, eye_point + HEAD_HALF_SIZE]), 0.0, 1.0)
    return widen_box(box, HEAD_WIDEN)


def read_records(pickle_file: Path) -> list[dict]:
    """The list of record dicts of a GOO pickle, read by the restricted unpickler (PICKLE_GLOBALS: a pickle naming
    any other Python object is an error naming it, and nothing of it runs); a record lacking a required key is an
    error naming its index."""
    if not pickle_file.is_file():
        raise MissingDataFile(f"{pickle_file}: GOO annotation pickle does not exist")
    records = load_restricted(pickle_file, PICKLE_GLOBALS, "GOO pickle", PICKLE_CONTENTS)
    if not isinstance(records, list):
        raise DataError(f"{pickle_file}: expected a list of record dicts, found {type(records).__name__}")
    for index, record in enumerate(records):
        missing = [key for key in REQUIRED_KEYS if not isinstance(record, dict) or key not in record]
        if missing:
            raise DataError(f"{pickle_file}: record {index} lacks the keys {missing} (required: {list(REQUIRED_KEYS)})")
    return records


class GOO(GazeTargetDataset):
    """One sample per record (see GazeTargetDataset.__getitem__); every sample in frame, one gaze point each.

    variant: "real" (GOO-Real) or "synth" (GOO-Synth), which selects the pickle of each split (ANNOTATION_FILES)
    unless `annotation_file` names one. Records of CORRUPT_IMAGES are skipped and the count is printed.
    Errors name the pickle and the record index (reported as its "line").
    """

    head_box_units = "normalised"
    point_units = "normalised"
    protocol = "goo"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        variant: str = "real",
        input_size: int = 224,
        output_size: int = 64,
        augment: bool | None = None,
        heatmap_sigma: float = 3.0,
        random_sigma: RandomSigma = None,
        seed: int = 0,
        annotation_file: str | Path | None = None,
        depth: bool = False,
        invalid_annotations: str = "error",
    ):
        if variant not in ANNOTATION_FILES:
            raise ValueError(f"GOO variant must be one of {sorted(ANNOTATION_FILES)}, found {variant!r}")
        self._init_sampling(split, input_size, output_size, augment, heatmap_sigma, random_sigma, seed, depth)
        self.root = Path(root)
        self.variant = variant
        self.annotation_file = Path(annotation_file) if annotation_file else self.root / ANNOTATION_FILES[variant][split]
        records = read_records(self.annotation_file)
        scale = np.array(COORDINATE_SCALE)
        checks = RowChecks(invalid_annotations)
        paths, indices, boxes, eyes, points = [], [], [], [], []
        for index, record in enumerate(records):
            where = f"{self.annotation_file}: record {index}"
            path = str(record["filename"]).replace("\\", "/")
            if path in CORRUPT_IMAGES[variant]:
                checks.drop(where, f"known corrupt GOO-{variant} image {path}")
                continue
            try:
                eye = np.array([record["hx"], record["hy"]], dtype=np.float64)
                gaze = np.array([record["gaze_cx"], record["gaze_cy"]], dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{where}: hx, hy, gaze_cx, gaze_cy should be numbers, found "
                                f"{[record[k] for k in ('hx', 'hy', 'gaze_cx', 'gaze_cy')]}") from None
            if (not checks.unique((path, *eye.tolist(), *gaze.tolist()), where)
                    or not checks.accept(where, goo_record_problem(eye, gaze, COORDINATE_SCALE))):
                continue
            paths.append(path)
            indices.append(index)
            eyes.append(eye / scale)
            boxes.append(synthesised_head_box(eye / scale))
            points.append(gaze[None] / scale)
        self.skipped = [path for path in (str(r["filename"]).replace("\\", "/") for r in records)
                        if path in CORRUPT_IMAGES[variant]]
        if self.skipped:
            print(f"{self.annotation_file}: skipped {len(self.skipped)} record(s) of the known corrupt GOO-{variant} "
                  f"image(s) {sorted(set(self.skipped))}", file=sys.stderr)
        print_skips(str(self.annotation_file), [s for s in checks.skipped if not s.reason.startswith("known corrupt")])
        self.skipped_rows = checks.skipped  # listed by datasets.validation in the run folder
        self._store_samples(paths, [self.annotation_file] * len(paths), indices, boxes, eyes, points,
                            [1] * len(paths))

    def image_path(self, relative: str) -> Path:
        return self.root / relative

    def depth_path(self, relative: str) -> Path:
        return Path(f"{self.root}_depth") / relative

    @classmethod
    def from_config(cls, config, split: str) -> "GOO":
        """From the project's options: source_dataset_dir, goo_variant, input_size, output_size, random_sigma,
        random_flag, seed, depth_flag and invalid_annotations."""
        from datasets.gazefollow import original_random_sigma

        return cls(
            root=config.source_dataset_dir, split=split, variant=config.goo_variant, input_size=config.input_size,
            output_size=config.output_size, heatmap_sigma=config.random_sigma, seed=getattr(config, "seed", 0),
            random_sigma=original_random_sigma if split == "train" and config.random_flag else None,
            depth=config.depth_flag, invalid_annotations=getattr(config, "invalid_annotations", "error"),
        )
