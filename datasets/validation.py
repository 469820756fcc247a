"""Checks of the data before training, so that bad data stops a run before its first step, naming the file and line.

Two parts:
- Row checks, run by each format's parser while it reads (datasets/gazefollow.py, videoattentiontarget.py, goo.py,
  gaze360/data.py): impossible values (NaN / inf, a head box with no area, an eye outside the image, an in-frame gaze
  point outside the image) are errors naming the file and line, or with `invalid_annotations: skip` counted skips;
  an exact repeat of an earlier row is dropped and counted (`RowChecks`; the per-format checks are the small
  `*_row_problem` functions).
- The image pass (`validate_splits`), run once over every split a run reads: every image (and depth map / frame)
  header is read in a thread pool with a progress bar (does the file exist, is it an image, is a JPEG / PNG complete,
  its size), then the checks that need the image size (a pixel head box inside its image, a pixel gaze point inside
  it). Every problem and every counted skip is listed in `<run folder>/data_validation.csv`. A clean result is cached
  under `<output_dir>/.data_validation/`, keyed by the annotation files' paths, sizes and modification times, so
  `skip_validation` can reuse it.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from datasets.errors import DataError
from datasets.image_files import EXIF_ORIENTATION, too_many_pixels, unsupported_mode

INVALID_POLICIES = ("error", "skip")
EDGE_TOLERANCE = 0.01  # a pixel gaze point may lie this fraction of the image size beyond the right / bottom edge
NEGATIVE_PIXELS = 20.0  # an in-frame pixel gaze point may be this slightly negative (clamped to 0 as the reference)
TAIL_BYTES = 1024  # the end of a file searched for the JPEG end-of-image marker / the PNG IEND chunk
JPEG_END, PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
REPORT_FILE = "data_validation.csv"
CACHE_FOLDER = ".data_validation"
CHUNK = 4096  # image headers handed to the thread pool at a time
MAX_LISTED = 10_000  # problems written to the report at most (the count is always exact)


@dataclass(frozen=True)
class Skip:
    """A row (or record, or sample) left out, with where it is and why."""

    where: str
    reason: str


# --- row checks -------------------------------------------------------------------------------------------------


class RowChecks:
    """The row side of validation for one annotation source, used by a parser while it reads.

    invalid: "error" (an impossible value stops with a DataError naming file and line) or "skip" (the row is left
    out and listed in `skipped`). Exact repeats of an earlier row are always left out and listed.
    """

    def __init__(self, invalid: str = "error"):
        if invalid not in INVALID_POLICIES:
            raise ValueError(f"invalid_annotations must be one of {INVALID_POLICIES}, found {invalid!r}")
        self.invalid = invalid
        self.skipped: list[Skip] = []
        self._first_seen: dict = {}

    def accept(self, where: str, problem: str | None) -> bool:
        """True for a row without a problem; otherwise an error, or (invalid "skip") a counted skip and False."""
        if problem is None:
            return True
        if self.invalid == "error":
            raise DataError(f"{where}: {problem} (fix the row, or pass --invalid_annotations skip to leave such rows "
                            "out, listed in the run folder's data_validation.csv)")
        self.skipped.append(Skip(where, problem))
        return False

    def unique(self, key, where: str) -> bool:
        """False (and a counted skip) when `key` -- the row's content -- repeats an earlier row exactly."""
        first = self._first_seen.get(key)
        if first is None:
            self._first_seen[key] = where
            return True
        self.skipped.append(Skip(where, f"exact duplicate of {first}"))
        return False

    def drop(self, where: str, reason: str) -> None:
        """Record a row the parser leaves out for a known reason (e.g. a known corrupt image of the release)."""
        self.skipped.append(Skip(where, reason))


def _floats(value) -> list[float]:
    """A number, sequence or array as a flat list of Python floats (the row checks run on every row: no numpy)."""
    if isinstance(value, np.ndarray):
        return value.ravel().astype(float).tolist()
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value)]


def _numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in _floats(values))


def not_finite(**named_values) -> str | None:
    """'<name> (<values>) is not a finite number' for the first of the named values (numbers, sequences or arrays)
    that holds a NaN or an infinity."""
    for name, value in named_values.items():
        if not all(map(math.isfinite, _floats(value))):
            return f"{name} ({_numbers(value)}) is not a finite number"
    return None


def no_area(name: str, box) -> str | None:
    """A box (x_min, y_min, x_max, y_max) with zero width or height (inverted sides are no problem: they are swapped)."""
    x_min, y_min, x_max, y_max = _floats(box)
    if x_min == x_max or y_min == y_max:
        return f"{name} ({_numbers(box)}) has no area"
    return None


def outside(name: str, point, width: float = 1.0, height: float = 1.0, low: float = 0.0) -> str | None:
    """A point outside [low, width] x [low, height] (default: normalised [0, 1])."""
    x, y = _floats(point)[:2]
    if not (low <= x <= width and low <= y <= height):
        return f"{name} ({x:g}, {y:g}) lies outside [{low:g}, {width:g}] x [{low:g}, {height:g}]"
    return None


def gazefollow_row_problem(body_box, eye, gaze, head_box, inout: int) -> str | None:
    """GazeFollow: body box, eye and gaze normalised, head box in pixels; the gaze of an out-of-frame (inout 0) or
    invalid (-1) row is not used and not checked."""
    in_frame = inout == 1
    return (not_finite(body_box=body_box, eye_point=eye, head_box=head_box, **({"gaze_point": gaze} if in_frame else {}))
            or no_area("head box", head_box)
            or outside("eye point", eye)
            or (outside("gaze point of an in-frame row", gaze) if in_frame else None))


def vat_row_problem(values) -> str | None:
    """VideoAttentionTarget: xmin, ymin, xmax, ymax, gazex, gazey in pixels; (-1, -1) is out of frame; an in-frame
    point may be slightly negative (clamped to 0), not more than NEGATIVE_PIXELS."""
    values = _floats(values)
    box, gaze = values[:4], values[4:]
    if gaze == [-1.0, -1.0]:
        return not_finite(head_box=box) or no_area("head box", box)
    problem = not_finite(head_box=box, gaze_point=gaze) or no_area("head box", box)
    if problem is None and min(gaze) < -NEGATIVE_PIXELS:
        problem = (f"in-frame gaze point ({_numbers(gaze)}) lies left of or above the frame (out of frame is "
                   "written -1, -1)")
    return problem


def goo_record_problem(eye, gaze, scale: tuple[float, float]) -> str | None:
    """GOO: eye (hx, hy) and gaze (gaze_cx, gaze_cy) on the `scale` (640 x 480) grid, every sample in frame."""
    return (not_finite(eye_point=eye, gaze_point=gaze) or outside("eye point (hx, hy)", eye, *scale)
            or outside("gaze point (gaze_cx, gaze_cy)", gaze, *scale))


# --- image headers -----------------------------------------------------------------------------------------------


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the header of `path`, after checking that a JPEG or PNG file is complete (its end
    marker is present: a truncated file fails later, mid-epoch, when it is decoded), that it declares no more pixels
    than the decompression-bomb limit and that its pixels can be read as 8-bit RGB (datasets/image_files.py).
    Errors say what is wrong."""
    return _inspect(path)[0]


def _inspect(path: Path) -> tuple[tuple[int, int], bool]:
    """(image_size, whether the image carries an EXIF orientation other than "as stored")."""
    try:
        with open(path, "rb") as handle:
            with Image.open(handle) as image:
                size, kind = image.size, image.format
                problem = unsupported_mode(image)
                rotated = "exif" in image.info and image.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9)
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        raise DataError("does not exist") from None
    except UnidentifiedImageError:
        raise DataError("is not a readable image (unknown format or corrupt header)") from None
    except Image.DecompressionBombError as error:
        raise DataError(f"is refused as a possible decompression bomb ({error}); raise PIL.Image.MAX_IMAGE_PIXELS "
                        "if it is genuine") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"is not a readable image ({error})") from None
    if kind in ("JPEG", "MPO") and JPEG_END not in tail:
        raise DataError("is a truncated JPEG (no end-of-image marker)")
    if kind == "PNG" and PNG_END not in tail:
        raise DataError("is a truncated PNG (no IEND chunk)")
    if size[0] < 1 or size[1] < 1:
        raise DataError(f"has no pixels ({size[0]} x {size[1]})")
    problem = problem or too_many_pixels(size)
    if problem is not None:
        raise DataError(problem)
    return size, rotated


def _header(path: Path) -> tuple[tuple[int, int] | None, str | None, bool]:
    try:
        size, rotated = _inspect(path)
    except DataError as error:
        return None, str(error), False
    return size, None, rotated


# --- splits and the image pass -----------------------------------------------------------------------------------


@dataclass
class SplitData:
    """What the image pass checks of one split: its annotation files (the cache key), every image with the first
    annotation that uses it, the rows already skipped by the parser, and the checks that need the image sizes
    (`check_sizes(sizes) -> problem messages`, each starting with the annotation's file and line)."""

    name: str
    annotation_files: list[Path]
    images: dict[Path, str]
    skipped: list[Skip] = field(default_factory=list)
    rows: int = 0
    check_sizes: Callable[[dict[Path, tuple[int, int]]], list[str]] | None = None
    options: dict = field(default_factory=dict)  # what else decides the result (e.g. depth maps on), for the cache
    in_frame: int | None = None  # samples with an in-frame gaze target (gaze-following splits), checked first


def gaze_target_split(name: str, dataset) -> SplitData:
    """The SplitData of a GazeTargetDataset (GazeFollow, VideoAttentionTarget, GOO): its images (and depth maps), and
    the size checks of its pixel coordinates: a head box with no area inside its image, an in-frame gaze point
    beyond the image's right or bottom edge (normalised coordinates are checked by the parsers)."""
    paths = dataset._paths  # the stored columns of datasets/base.py
    unique, first = np.unique(paths, return_index=True)
    images: dict[Path, str] = {}
    for relative, index in zip(unique.tolist(), first.tolist()):
        where = dataset.where(index)
        images[dataset.image_path(relative)] = where
        if dataset.depth:
            images[dataset.depth_path(relative)] = where

    def check_sizes(sizes: dict[Path, tuple[int, int]]) -> list[str]:
        per_image = {relative: sizes[dataset.image_path(relative)] for relative in unique.tolist()}
        size = np.array([per_image[p] for p in paths.tolist()], dtype=np.float64).reshape(-1, 2)
        problems = []
        boxes = dataset._head_boxes * (np.tile(size, 2) if dataset.head_box_units == "normalised" else 1.0)
        clamped = np.clip(boxes, 0.0, np.tile(size, 2))
        empty = np.flatnonzero((clamped[:, 2] <= clamped[:, 0]) | (clamped[:, 3] <= clamped[:, 1]))
        problems += [f"{dataset.where(i)}: head box ({_numbers(dataset._head_boxes[i])}) lies outside the "
                     f"{size[i, 0]:g} x {size[i, 1]:g} image {dataset.image_path(str(paths[i]))}" for i in empty]
        if dataset.point_units == "pixels":
            owner = np.repeat(np.arange(len(paths)), np.diff(dataset._point_offsets))
            limit = size[owner] * (1.0 + EDGE_TOLERANCE)
            beyond = (dataset._gaze_points > limit).any(axis=1) & (dataset._inout[owner] == 1)
            for point in np.flatnonzero(beyond):
                i = owner[point]
                problems.append(f"{dataset.where(i)}: in-frame gaze point ({_numbers(dataset._gaze_points[point])}) "
                                f"lies outside the {size[i, 0]:g} x {size[i, 1]:g} image "
                                f"{dataset.image_path(str(paths[i]))}")
        return problems

    annotation_files = [Path(name_) for name_ in dataset._annotation_names.tolist()]
    return SplitData(name, annotation_files, images, list(getattr(dataset, "skipped_rows", [])), len(paths),
                     check_sizes, {"class": type(dataset).__name__, "depth": bool(dataset.depth),
                                   "samples": len(paths)}, in_frame=int(np.count_nonzero(dataset._inout == 1)))


def no_in_frame_target(annotation_files, samples: int) -> str:
    """The message for a training split none of whose `samples` has an in-frame gaze target."""
    return (f"{_source(annotation_files)}: none of the {samples} training samples has its gaze target in the frame "
            "(inout 1): the heatmap decoder would learn nothing and the location metrics would score chance (AUC "
            "0.5); check the inout column / the -1,-1 gaze points of these files")


def _source(annotation_files) -> str:
    """The annotation file of a split, or the folder of its files and their count."""
    files = sorted({str(path) for path in annotation_files})
    return files[0] if len(files) == 1 else f"{os.path.commonpath(files)} ({len(files)} annotation files)"


def head_crop_split(name: str, dataset) -> SplitData:
    """The SplitData of a Gaze360 / RT-GENE HeadCropDataset (gaze360/data.py): every frame of every sample's window
    (frames shared by overlapping windows are read once); head crops of any size are accepted."""
    images: dict[Path, str] = {}
    source = ", ".join(str(p) for p in getattr(dataset, "annotation_files", []))
    for files, sample in zip(dataset.frame_files, dataset.names):
        for path in files:
            images.setdefault(path, f"{source}: sample {sample}")
    return SplitData(name, list(getattr(dataset, "annotation_files", [])), images,
                     list(getattr(dataset, "skipped_rows", [])), len(dataset.frame_files), None,
                     {"class": type(dataset).__name__, "samples": len(dataset.frame_files)})


def validate_splits(splits: list[SplitData], report_dir: str | Path | None = None,
                    cache_dir: str | Path | None = None, skip: bool = False, progress: bool = True,
                    workers: int | None = None) -> dict:
    """Check every image of every split in one pass, then the size-dependent annotations; write the report.

    A problem raises a DataError whose first line names the first problem's file and line (all problems are listed
    in `<report_dir>/data_validation.csv`). skip=True reuses a clean result cached in `cache_dir` for the same
    annotation files (paths, sizes, modification times); without one it validates and says why.
    Returns a summary: images checked, rows skipped per split, seconds, and whether the cache was used.
    """
    for split in splits:  # before anything else: no image needs to be read to know this
        if split.in_frame == 0 and split.name == "train":
            raise DataError(no_in_frame_target(split.annotation_files, split.rows))
        if split.in_frame == 0:
            print(f"note: {_source(split.annotation_files)}: none of the {split.rows} {split.name} samples has its "
                  "gaze target in the frame: every metric of the protocol (AUC, L2, heatmap AP, and the in/out AP, "
                  "which needs in-frame samples too) is undefined and reported as n/a", file=sys.stderr)
    key = _cache_key(splits)
    cache_file = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
    skipped = [(split.name, skip_) for split in splits for skip_ in split.skipped]
    found = skip and cache_file is not None and cache_file.is_file()
    cached = _read_cache(cache_file) if found else None  # an unreadable cache is said and validated anew
    if cached is not None:
        _write_report(report_dir, skipped, [])
        print(f"data validation skipped (skip_validation): these annotation files were validated on "
              f"{cached['validated']} and have not changed since ({cache_file})")
        return {**cached["summary"], "cached": True}
    if skip and not found:
        print("skip_validation: no earlier validation of these annotation files in their current state was found "
              f"(looked for {cache_file}); validating them now")
    started = time.perf_counter()
    images: dict[Path, tuple[str, str]] = {}  # image -> (split, the first annotation using it)
    for split in splits:
        for path, where in split.images.items():
            images.setdefault(path, (split.name, where))
    sizes, problems, oriented = {}, [], []
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    items = list(images.items())
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(items), desc="checking images", unit="img",
                                                               disable=not progress, leave=False,
                                                               mininterval=0.5) as bar:
        for start in range(0, len(items), CHUNK):  # a bounded number of pending reads (Gaze360: ~10^6 frames)
            chunk = items[start:start + CHUNK]
            for (path, (split_name, where)), (size, problem, rotated) in zip(chunk, pool.map(_header,
                                                                                         [p for p, _ in chunk])):
                if problem is None:
                    sizes[path] = size
                    if rotated:
                        oriented.append(path)
                else:
                    problems.append((split_name, f"{where}: the image {path} {problem}"))
            bar.update(len(chunk))
    for split in splits:  # the size checks need every size
        if split.check_sizes is not None and not problems:
            problems += [(split.name, message) for message in split.check_sizes(sizes)]
    seconds = time.perf_counter() - started
    if oriented:  # legitimate, but a sign that the images may not be what the annotations were made on
        print(f"note: {len(oriented)} image(s) carry an EXIF orientation other than 'as stored', e.g. {oriented[0]}; "
              "they are read as stored (unrotated), as the benchmarks' reference loaders read them and their "
              "annotations are given (docs/trust.md, \"Images\")", file=sys.stderr)
    report = _write_report(report_dir, skipped, problems)
    if problems:
        listed = f"listed in {report}" if report else ""
        more = f" ({len(problems)} problems in all{', ' if listed else ''}{listed})" if len(problems) > 1 else (
            f" ({listed})" if listed else "")
        raise DataError(problems[0][1] + more)
    summary = {"images": len(images), "seconds": round(seconds, 3), "cached": False,
               "splits": {split.name: {"rows": split.rows, "images": len(split.images), "skipped": len(split.skipped)}
                          for split in splits}}
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(cache_file, json.dumps({"validated": time.strftime("%Y-%m-%d %H:%M:%S"), "summary": summary,
                                              "files": _file_states(splits)}, indent=1))
    parts = [f"{split.name} {split.rows} samples, {len(split.images)} images"
             + (f", {len(split.skipped)} rows skipped" if split.skipped else "") for split in splits]
    print(f"data validated in {seconds:.1f} s: " + "; ".join(parts)
          + (f" (skipped rows listed in {report})" if skipped and report else ""))
    return summary


def validate_datasets(datasets: dict, run_dir: str | Path | None, output_dir: str | Path | None, skip: bool = False,
                      progress: bool = True) -> dict:
    """validate_splits over GazeTargetDatasets by split name ({"train": ..., "test": ...}; None entries ignored), the
    report in `run_dir`, the cache in `<output_dir>/.data_validation`."""
    splits = [gaze_target_split(name, dataset) for name, dataset in datasets.items() if dataset is not None]
    cache_dir = Path(output_dir) / CACHE_FOLDER if output_dir is not None else None
    return validate_splits(splits, run_dir, cache_dir, skip=skip, progress=progress)


def _read_cache(cache_file: Path) -> dict | None:
    """A cached clean check (written by validate_splits), or None, said aloud, when the file is unreadable (empty,
    cut short, edited): the data are then validated again and the file replaced. A cache never stops a run."""
    try:
        cached = json.loads(cache_file.read_text())
        if isinstance(cached, dict) and isinstance(cached.get("summary"), dict) and "validated" in cached:
            return cached
        problem = "not a cached validation (its keys are not 'validated', 'summary', 'files')"
    except (OSError, UnicodeDecodeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        problem = "empty" if isinstance(error, ValueError) and not cache_file.stat().st_size else \
            f"unreadable ({type(error).__name__}: {error})"
    print(f"note: {cache_file}: the cached data validation is {problem}; ignoring it (it is rewritten after this "
          "check)", file=sys.stderr)
    return None


def _file_states(splits: list[SplitData]) -> list:
    states = []
    for split in splits:
        files = []
        for path in sorted(set(split.annotation_files)):
            stat = path.stat()
            files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        states.append({"split": split.name, "files": files, "options": split.options})
    return states


def _cache_key(splits: list[SplitData]) -> str:
    text = json.dumps(_file_states(splits), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_report(report_dir, skipped: list[tuple[str, Skip]], problems: list[tuple[str, str]]) -> Path | None:
    """<report_dir>/data_validation.csv: one line per problem (action "error") and per skipped row ("skipped")."""
    if report_dir is None:
        return None
    path = Path(report_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "action", "where", "problem"])
        for split, message in problems[:MAX_LISTED]:
            where, _, problem = message.partition(": ")
            writer.writerow([split, "error", where, problem])
        for split, skip_ in skipped[:MAX_LISTED]:
            writer.writerow([split, "skipped", skip_.where, skip_.reason])
    return path


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def print_skips(source: str, skipped: list[Skip], stream=sys.stderr) -> None:
    """One line saying how many rows of `source` a parser left out and why (the first few)."""
    if skipped:
        examples = "; ".join(f"{s.where}: {s.reason}" for s in skipped[:3])
        print(f"{source}: left out {len(skipped)} row(s), e.g. {examples}", file=stream)

