"""GazeFollow (extended, with in/out labels): annotation parsing, cleaning, test-set grouping and the torch Dataset.

Annotation coordinates enter normalised to [0, 1] (body box, eye, gaze) except the head box, which is in PIXELS of
the original image; every coordinate a sample returns is normalised to the image the sample shows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from datasets.base import MAX_GAZE_POINTS, GazeTargetDataset, RandomSigma
from datasets.errors import DataError, MissingDataFile
from datasets.text_files import csv_rows
from datasets.validation import RowChecks, gazefollow_row_problem, not_finite, print_skips

TRAIN_COLUMNS = (
    "path", "idx",
    "body_bbox_x", "body_bbox_y", "body_bbox_w", "body_bbox_h",  # normalised
    "eye_x", "eye_y", "gaze_x", "gaze_y",  # normalised
    "bbox_x_min", "bbox_y_min", "bbox_x_max", "bbox_y_max",  # head box, pixels
    "inout",  # 1 in frame, 0 out of frame, -1 invalid
    "source",
    "meta",  # the original file name in the release; a boolean in the re-annotated validation copy
)
TEST_COLUMNS = tuple(name for name in TRAIN_COLUMNS if name != "inout")
ANNOTATION_FILES = {"train": "train_annotations_release.txt", "test": "test_annotations_release.txt"}
DEPTH_FOLDERS = {"train": "depth", "test2": "depth2"}  # image folder -> depth folder (RGB+depth reference layout)


@dataclass(frozen=True)
class PersonAnnotation:
    """One sample as read from the annotation file, after the cleaning that needs no image.

    `line` is the 1-based line of the sample's first row; a test person's other fields come from that row.
    `head_box` is in pixels with inverted sides already swapped (clamping to the image happens on loading).
    """

    path: str
    line: int
    idx: int
    body_box: np.ndarray  # normalised x, y, w, h
    eye_point: np.ndarray  # normalised x, y
    gaze_points: np.ndarray  # (N, 2) normalised; one point per annotator
    head_box: np.ndarray  # pixels x_min, y_min, x_max, y_max
    inout: int
    source: str
    meta: str


def original_random_sigma(rng: np.random.Generator) -> int:
    """The original DiffusionGaze random heatmap sigma: an integer drawn uniformly from 7..10 (output cells)."""
    return int(rng.integers(7, 11))


def read_annotations(annotation_file: Path, columns: tuple[str, ...],
                     checks: RowChecks | None = None) -> list[PersonAnnotation]:
    """Parse every row of a GazeFollow annotation file into one PersonAnnotation per row.

    Blank lines are skipped. A row with another number of fields than `columns`, or a number that does not parse,
    is an error naming the file and the line; so is an impossible value (datasets.validation.gazefollow_row_problem:
    NaN / inf, a head box with no area, an eye or in-frame gaze point outside [0, 1]) unless `checks` skips such rows.
    An exact repeat of an earlier row is left out and recorded in `checks.skipped`.
    """
    checks = checks or RowChecks()
    if not Path(annotation_file).is_file():
        raise MissingDataFile(f"{annotation_file}: GazeFollow annotation file does not exist")
    rows = []
    for line, fields in csv_rows(annotation_file, "GazeFollow annotation file"):
        if not fields:
            continue
        where = f"{annotation_file}:{line}"
        if len(fields) != len(columns):
            raise DataError(
                f"{where}: expected {len(columns)} comma-separated fields ({', '.join(columns)}), found "
                f"{len(fields)}"
            )
        record = dict(zip(columns, fields))

        def number(name: str) -> float:
            try:
                return float(record[name])
            except ValueError:
                raise DataError(f"{where}: field '{name}' should be a number, found {record[name]!r}") from None

        inout = 1
        if "inout" in record:
            inout_value = number("inout")
            if inout_value not in (-1.0, 0.0, 1.0):
                raise DataError(f"{where}: field 'inout' should be 1, 0 or -1, found {record['inout']!r}")
            inout = int(inout_value)
        head_box = [number(n) for n in ("bbox_x_min", "bbox_y_min", "bbox_x_max", "bbox_y_max")]
        body_box = [number(n) for n in ("body_bbox_x", "body_bbox_y", "body_bbox_w", "body_bbox_h")]
        eye_point = [number("eye_x"), number("eye_y")]
        gaze_point = [number("gaze_x"), number("gaze_y")]
        idx = number("idx")
        if not checks.unique(tuple(fields), where) or not checks.accept(
                where, gazefollow_row_problem(body_box, eye_point, gaze_point, head_box, inout)
                or not_finite(idx=idx)):
            continue
        head_box, body_box, eye_point, gaze_point = map(np.array, (head_box, body_box, eye_point, gaze_point))
        # Some boxes are stored with inverted sides; the references swap them.
        head_box = np.concatenate([np.minimum(head_box[:2], head_box[2:]), np.maximum(head_box[:2], head_box[2:])])
        rows.append(PersonAnnotation(
            path=record["path"],
            line=line,
            idx=int(idx),
            body_box=body_box,
            eye_point=eye_point,
            gaze_points=gaze_point[None],
            head_box=head_box,
            inout=inout,
            source=record["source"],
            meta=record["meta"],
        ))
    return rows


def group_test_rows(rows: list[PersonAnnotation], annotation_file: Path) -> list[PersonAnnotation]:
    """Merge test rows of one person, keyed by (path, eye_x) as the references do, keeping every annotator point.

    Persons keep the order of their first row. More than MAX_GAZE_POINTS rows for one person is an error.
    """
    groups: dict[tuple[str, float], list[PersonAnnotation]] = {}
    for row in rows:
        groups.setdefault((row.path, float(row.eye_point[0])), []).append(row)
    persons = []
    for group in groups.values():
        if len(group) > MAX_GAZE_POINTS:
            raise DataError(
                f"{annotation_file}:{group[0].line}: person {group[0].path} (eye_x {group[0].eye_point[0]}) has "
                f"{len(group)} annotator rows (lines {', '.join(str(r.line) for r in group)}); at most "
                f"{MAX_GAZE_POINTS} are supported"
            )
        first = group[0]
        persons.append(PersonAnnotation(
            path=first.path, line=first.line, idx=first.idx, body_box=first.body_box, eye_point=first.eye_point,
            gaze_points=np.concatenate([row.gaze_points for row in group]), head_box=first.head_box,
            inout=1, source=first.source, meta=first.meta,
        ))
    return persons


def drop_far_gaze_points(persons: list[PersonAnnotation], fraction: float) -> list[PersonAnnotation]:
    """Drop annotator points farther from their person's mean point than the `fraction` quantile of all such distances.

    The distances of every point of every person are pooled (as in the original), sorted, and the threshold is the
    one at position int(fraction * count). A person whose points all lie beyond it is dropped entirely.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"gaze_point_threshold must be a fraction in (0, 1) here, found {fraction}")
    distances = [np.linalg.norm(p.gaze_points - p.gaze_points.mean(axis=0), axis=1) for p in persons]
    pooled = np.sort(np.concatenate(distances))
    threshold = pooled[int(fraction * len(pooled))]
    kept = []
    for person, distance in zip(persons, distances):
        points = person.gaze_points[distance <= threshold]
        if len(points):
            kept.append(replace(person, gaze_points=points))
    return kept


class GazeFollow(GazeTargetDataset):
    """GazeFollow samples as dicts of tensors (see `GazeTargetDataset.__getitem__`, the path shared by every dataset).

    split "train": one sample per row with inout 0 or 1 (rows with inout -1 are dropped); augmented by default.
    split "test": one sample per person (rows grouped by path and eye_x), every sample in frame, never augmented;
    coordinates are in the original image's normalised frame.

    heatmap_sigma, random_sigma, seed, depth: see GazeTargetDataset. Depth maps are read from the RGB+depth
    reference's layout: `train/...` -> `depth/...`, `test2/...` -> `depth2/...` (same file name).
    gaze_point_threshold (test only): a FRACTION in [0, 1), 0 = off (the original declared it int but used it
        as a fraction). Annotator points farther from their person's mean point than this quantile of all such
        distances are dropped, e.g. 0.9 drops the farthest 10 % (see drop_far_gaze_points).
    subsample_test (test only): None = the full test set; a fraction f in (0, 1] keeps round(f x persons)
        whole persons (never single rows), chosen with numpy's default_rng(seed), in file order.
    annotation_file: overrides <root>/train_annotations_release.txt or test_annotations_release.txt.
    """

    head_box_units = "pixels"  # the head box columns of the release are pixels ...
    point_units = "normalised"  # ... while eye and gaze are normalised
    protocol = "gazefollow"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        input_size: int = 224,
        output_size: int = 64,
        augment: bool | None = None,
        heatmap_sigma: float = 3.0,
        random_sigma: RandomSigma = None,
        gaze_point_threshold: float = 0.0,
        subsample_test: float | None = None,
        seed: int = 0,
        annotation_file: str | Path | None = None,
        depth: bool = False,
        invalid_annotations: str = "error",
    ):
        if split not in ANNOTATION_FILES:
            raise ValueError(f"split must be one of {sorted(ANNOTATION_FILES)}, found {split!r}")
        is_test = split == "test"
        if not is_test and (gaze_point_threshold or subsample_test is not None):
            raise ValueError("gaze_point_threshold and subsample_test apply to the test split only")
        if not 0.0 <= gaze_point_threshold < 1.0:
            raise ValueError(f"gaze_point_threshold must be a fraction in [0, 1), found {gaze_point_threshold}")
        if subsample_test is not None and not 0.0 < subsample_test <= 1.0:
            raise ValueError(f"subsample_test must be None or a fraction in (0, 1], found {subsample_test}")
        self._init_sampling(split, input_size, output_size, augment, heatmap_sigma, random_sigma, seed, depth)
        self.root = Path(root)
        self.annotation_file = Path(annotation_file) if annotation_file else self.root / ANNOTATION_FILES[split]

        checks = RowChecks(invalid_annotations)
        rows = read_annotations(self.annotation_file, TEST_COLUMNS if is_test else TRAIN_COLUMNS, checks)
        self.skipped_rows = checks.skipped  # listed by datasets.validation in the run folder
        print_skips(str(self.annotation_file), checks.skipped)
        if is_test:
            persons = group_test_rows(rows, self.annotation_file)
            if gaze_point_threshold > 0:
                persons = drop_far_gaze_points(persons, gaze_point_threshold)
            if subsample_test is not None and subsample_test < 1.0:
                count = max(1, round(subsample_test * len(persons)))
                chosen = np.sort(np.random.default_rng(seed).choice(len(persons), size=count, replace=False))
                persons = [persons[i] for i in chosen]
        else:
            persons = [row for row in rows if row.inout != -1]
        if not persons:
            raise DataError(f"{self.annotation_file}: no {split} samples left after cleaning")
        self._store_samples(
            paths=[p.path for p in persons], annotation_files=[self.annotation_file] * len(persons),
            lines=[p.line for p in persons], head_boxes=[p.head_box for p in persons],
            eye_points=[p.eye_point for p in persons],
            gaze_points=[p.gaze_points for p in persons], inout=[p.inout for p in persons],
        )
        # The fields only GazeFollow has, kept so that `annotation` returns every field of the file.
        self._idx = np.array([p.idx for p in persons])
        self._body_boxes = np.stack([p.body_box for p in persons])
        self._sources = np.array([p.source for p in persons])
        self._metas = np.array([p.meta for p in persons])

    def image_path(self, relative: str) -> Path:
        return self.root / relative

    def depth_path(self, relative: str) -> Path:
        """`train/<dir>/<file>` -> `depth/<dir>/<file>`, `test2/...` -> `depth2/...`, as in the RGB+depth reference."""
        first, _, rest = relative.partition("/")
        if first not in DEPTH_FOLDERS:
            raise ValueError(f"{relative}: GazeFollow depth maps are found for images under "
                             f"{sorted(DEPTH_FOLDERS)}, this path starts with {first!r}")
        return self.root / DEPTH_FOLDERS[first] / rest

    def annotation(self, index: int) -> PersonAnnotation:
        """The cleaned annotation of sample `index`, every field of the file kept."""
        return PersonAnnotation(
            path=str(self._paths[index]), line=int(self._lines[index]), idx=int(self._idx[index]),
            body_box=self._body_boxes[index].copy(), eye_point=self._eye_points[index].copy(),
            gaze_points=self.sample_gaze_points(index), head_box=self._head_boxes[index].copy(),
            inout=int(self._inout[index]), source=str(self._sources[index]), meta=str(self._metas[index]),
        )

    @classmethod
    def from_config(cls, config, split: str) -> "GazeFollow":
        """Build from the project's options (engine.options): source_dataset_dir, input_size, output_size,
        random_sigma (the target sigma), random_flag (training sigma drawn by `original_random_sigma` instead),
        gaze_point_threshold, test_subsample_fraction (0 or 1 = full test set), seed (default 0), depth_flag and
        invalid_annotations."""
        common = dict(
            root=config.source_dataset_dir, split=split, input_size=config.input_size, output_size=config.output_size,
            heatmap_sigma=config.random_sigma, seed=getattr(config, "seed", 0),
            depth=getattr(config, "depth_flag", False),
            invalid_annotations=getattr(config, "invalid_annotations", "error"),
        )
        if split == "train":
            return cls(**common, random_sigma=original_random_sigma if config.random_flag else None)
        fraction = config.test_subsample_fraction
        return cls(
            **common,
            gaze_point_threshold=config.gaze_point_threshold,
            subsample_test=None if fraction in (0, 1) else fraction,
        )
