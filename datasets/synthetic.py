"""A synthetic GazeFollow-extended dataset, and the command line that writes every synthetic format.

`python -m datasets.synthetic --root DIR` writes the exact layout and annotation format of the real release (see
datasets/gazefollow.py), so the real loader, training and evaluation run on it unchanged; `--format` selects the
VideoAttentionTarget or GOO writer of datasets/synthetic_formats.py. The scenes (people whose faces show where they
look, among coloured objects) are drawn by datasets/synthetic_scenes.py; annotators disagree a little around the
target. `--ambiguous_split P` makes every target ambiguous instead: each face points between two objects, a fraction P
of the annotators look at one and the rest at the other (docs/ambiguous_synthetic_data.md).
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np

from datasets import synthetic_formats
from datasets.synthetic_scenes import Person, _make_scene

SPLIT_FOLDERS = {"train": "train", "test": "test2"}
ANNOTATION_FILES = {"train": "train_annotations_release.txt", "test": "test_annotations_release.txt"}
PEOPLE_PER_IMAGE, PEOPLE_PROBABILITIES = (1, 2, 3), (0.2, 0.45, 0.35)
OUT_OF_FRAME_FRACTION, INVALID_FRACTION = 0.12, 0.03  # of training people
ANNOTATORS_RANGE = (8, 12)  # annotator rows per test person, inclusive
ANNOTATOR_SPREAD = 0.3  # standard deviation of an annotator's point around the object centre, in object radii
# With ambiguous_split: one or two people per image (three rarely leave room for two fans of free directions).
AMBIGUOUS_PEOPLE_PER_IMAGE, AMBIGUOUS_PEOPLE_PROBABILITIES = (1, 2), (0.4, 0.6)
AMBIGUOUS_MODES_FILE = "ambiguous_modes.csv"  # the two targets of every in-frame person, written with ambiguous_split
AMBIGUOUS_MODES_COLUMNS = ("split", "path", "idx", "eye_x", "eye_y", "first_x", "first_y", "second_x", "second_y",
                           "first_share", "half_angle_deg", "n_first", "n_second")


def _annotator_point(rng: np.random.Generator, person: Person, size: tuple[int, int], target=None) -> np.ndarray:
    """A normalised gaze point near the centre of `target` (default: the person's target); a uniform, meaningless
    point for out-of-frame/invalid rows."""
    if person.role != "in":
        return rng.random(2)
    target = person.target if target is None else target
    point = target.centre + rng.normal(0.0, ANNOTATOR_SPREAD * target.radius, size=2)
    return np.clip(point, 0, size) / np.array(size)


def _first_annotators(rng: np.random.Generator, share: float, count: int) -> int:
    """How many of `count` annotators look at the first target: share x count rounded down or up, up with probability
    equal to its fractional part, so that the expected share is exactly `share`."""
    exact = share * count
    return math.floor(exact) + int(rng.random() < exact - math.floor(exact))


def _modes_row(split: str, path: str, idx: int, person: Person, size: tuple[int, int], share: float, n_first: int,
               n_second: int) -> str:
    """One line of AMBIGUOUS_MODES_FILE: the eye and both target centres normalised, the first target's share."""
    values = [*(person.eye_point / np.array(size)), *(person.target.centre / np.array(size)),
              *(person.second_target.centre / np.array(size))]
    return ",".join([split, path, str(idx), *(f"{v:.5f}" for v in values), f"{share:g}",
                     f"{math.degrees(person.spread):.2f}", str(n_first), str(n_second)])


def _row(path: str, idx: int, person: Person, gaze: np.ndarray, head_box: np.ndarray, size: tuple[int, int],
         inout: int | None, meta: str) -> str:
    """One annotation line: 17 fields for train (with inout), 16 for test (see gazefollow.TRAIN_COLUMNS)."""
    width, height = size
    x_min, _, x_max, y_max = person.body_box
    top = person.centre[1] - person.radius
    body = (x_min / width, top / height, (x_max - x_min) / width, (y_max - top) / height)
    eye = person.eye_point / np.array(size)
    fields = [path, str(idx), *(f"{v:.5f}" for v in (*body, *eye, *gaze)), *(f"{v:.1f}" for v in head_box)]
    if inout is not None:
        fields.append(str(inout))
    return ",".join(fields + ["synthetic", meta])


def _people_counts(rng: np.random.Generator, n_images: int, ambiguous: bool = False) -> list[int]:
    counts, probabilities = ((AMBIGUOUS_PEOPLE_PER_IMAGE, AMBIGUOUS_PEOPLE_PROBABILITIES) if ambiguous
                             else (PEOPLE_PER_IMAGE, PEOPLE_PROBABILITIES))
    return [int(c) for c in rng.choice(counts, size=n_images, p=probabilities)]


def _training_roles(rng: np.random.Generator, total: int) -> list[str]:
    """Exact numbers of out-of-frame and invalid people (at least one each from 3 people on), at random places."""
    n_out = max(1, round(OUT_OF_FRAME_FRACTION * total)) if total >= 3 else 0
    n_invalid = max(1, round(INVALID_FRACTION * total)) if total >= 3 else 0
    roles = np.array(["in"] * total, dtype=object)
    order = rng.permutation(total)
    roles[order[:n_out]] = "out"
    roles[order[n_out : n_out + n_invalid]] = "invalid"
    return list(roles)


def _write_split(root: Path, split: str, n_images: int, seed: int, ambiguous_split: float | None = None) -> dict:
    """Write one split's images and annotation file; return its counts. With `ambiguous_split` every in-frame person
    has two targets: a training row names the first with probability ambiguous_split, a test person's annotators
    split between them (`_first_annotators`), and the modes are returned under "modes" (lines of the modes file)."""
    ambiguous = ambiguous_split is not None
    split_code = {"train": 0, "test": 1}[split]
    plan_rng = np.random.default_rng([seed, split_code])
    counts = _people_counts(plan_rng, n_images, ambiguous)
    roles = _training_roles(plan_rng, sum(counts)) if split == "train" else ["in"] * sum(counts)
    lines, modes, person_id = [], [], 0
    stats = {"images": n_images, "people": sum(counts), "rows": 0, "in_frame": 0, "out_of_frame": 0, "invalid": 0}
    if ambiguous:
        stats.update(first_target_rows=0, second_target_rows=0)
    for image_index in range(n_images):
        rng = np.random.default_rng([seed, split_code, image_index])  # one image does not depend on the others
        image_roles = roles[person_id : person_id + counts[image_index]]
        image, people = _make_scene(rng, image_roles, ambiguous)
        path = f"{SPLIT_FOLDERS[split]}/{image_index // 1000:08d}/{image_index:08d}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / path, quality=92)
        meta = f"synthetic_{split}_{image_index:08d}.jpg"
        for person in people:
            person_id += 1
            head_box = np.concatenate([person.centre - person.radius, person.centre + person.radius])
            head_box = head_box + rng.normal(0.0, 0.04 * person.radius, size=4)  # a detector's imprecision
            if ambiguous and person.role == "in":
                targets = _ambiguous_targets(rng, split, person, ambiguous_split)
                n_first = sum(target is person.target for target in targets)
                modes.append(_modes_row(split, path, person_id, person, image.size, ambiguous_split, n_first,
                                        len(targets) - n_first))
                stats["first_target_rows"] += n_first
                stats["second_target_rows"] += len(targets) - n_first
            if split == "train":
                inout = {"in": 1, "out": 0, "invalid": -1}[person.role]
                target = targets[0] if ambiguous and person.role == "in" else None
                gaze = _annotator_point(rng, person, image.size, target)
                lines.append(_row(path, person_id, person, gaze, head_box, image.size, inout, meta))
                stats[{"in": "in_frame", "out": "out_of_frame", "invalid": "invalid"}[person.role]] += 1
            else:
                looked_at = targets if ambiguous else [None] * rng.integers(ANNOTATORS_RANGE[0],
                                                                           ANNOTATORS_RANGE[1] + 1)
                for target in looked_at:
                    gaze = _annotator_point(rng, person, image.size, target)
                    lines.append(_row(path, person_id, person, gaze, head_box, image.size, None, meta))
                stats["in_frame"] += 1
    stats["rows"] = len(lines)
    (root / ANNOTATION_FILES[split]).write_text("\n".join(lines) + "\n")
    if ambiguous:
        stats["modes"] = modes
    return stats


def _ambiguous_targets(rng: np.random.Generator, split: str, person: Person, share: float) -> list:
    """The objects the annotator rows of an ambiguous in-frame person look at, in row order: one for a training row
    (the first target with probability `share`), 8 to 12 for a test person (`_first_annotators` of them at the
    first target, in a random order)."""
    if split == "train":
        return [person.target if rng.random() < share else person.second_target]
    count = int(rng.integers(ANNOTATORS_RANGE[0], ANNOTATORS_RANGE[1] + 1))
    n_first = _first_annotators(rng, share, count)
    targets = np.array([person.target] * n_first + [person.second_target] * (count - n_first), dtype=object)
    return list(targets[rng.permutation(count)])


def generate_gazefollow(root: str | Path, n_train_images: int = 400, n_test_images: int = 100, seed: int = 0,
                        overwrite: bool = False, ambiguous_split: float | None = None) -> dict:
    """Write a synthetic GazeFollow-extended dataset under `root`; return counts of what was written.

    The same seed gives byte-identical annotation files (and images). An existing dataset in `root` is an error
    unless `overwrite`, which first deletes root/train, root/test2, the annotation files and the modes file.
    ambiguous_split: None (the default) draws the ordinary scenes, one target per person. A fraction P in (0, 1)
    draws ambiguous scenes instead (datasets/synthetic_scenes.py): every in-frame person's face points between two
    objects; a training row is annotated at the first (clockwise) one with probability P, and P of a test person's
    annotators (rounded as `_first_annotators` says) look at it, the others at the second. The two targets of every
    in-frame person are written to AMBIGUOUS_MODES_FILE (docs/ambiguous_synthetic_data.md).
    """
    if n_train_images < 1 or n_test_images < 1:
        raise ValueError(f"need at least one image per split, found {n_train_images} train and {n_test_images} test")
    if ambiguous_split is not None and not 0.0 < ambiguous_split < 1.0:
        raise ValueError(f"ambiguous_split must be a fraction strictly between 0 and 1 (the share of annotators "
                         f"looking at the first of the two targets), found {ambiguous_split}")
    root = Path(root)
    names = (*SPLIT_FOLDERS.values(), *ANNOTATION_FILES.values(), AMBIGUOUS_MODES_FILE)
    existing = [root / name for name in names if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset ({', '.join(str(p) for p in existing)}); "
                              f"pass overwrite=True (--overwrite) to replace it")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    train = _write_split(root, "train", n_train_images, seed, ambiguous_split)
    test = _write_split(root, "test", n_test_images, seed, ambiguous_split)
    summary = {"root": str(root), "seed": seed, "train": train, "test": test}
    readme = (
        "Synthetic GazeFollow-extended dataset written by `python -m datasets.synthetic` (datasets/synthetic.py).\n"
        f"seed: {seed}\n"
        f"train: {train['images']} images, {train['rows']} rows ({train['in_frame']} in frame, "
        f"{train['out_of_frame']} out of frame, {train['invalid']} invalid with inout -1)\n"
        f"test: {test['images']} images, {test['people']} people, {test['rows']} annotator rows\n"
        "Annotation format: as the GazeFollow-extended release (17 fields for train, 16 for test; head boxes in "
        "pixels, other coordinates normalised).\n"
    )
    if ambiguous_split is not None:
        modes = train.pop("modes") + test.pop("modes")
        (root / AMBIGUOUS_MODES_FILE).write_text("\n".join([",".join(AMBIGUOUS_MODES_COLUMNS), *modes]) + "\n")
        summary["ambiguous_split"] = ambiguous_split
        readme += (
            f"ambiguous_split: {ambiguous_split:g}: every in-frame face points between two objects; "
            f"{ambiguous_split:g} of the annotators look at the first (clockwise) one, the others at the second.\n"
            f"train: {train['first_target_rows']} in-frame rows at the first target, {train['second_target_rows']} "
            "at the second\n"
            f"test: {test['first_target_rows']} annotator rows at the first target, {test['second_target_rows']} at "
            "the second\n"
            f"{AMBIGUOUS_MODES_FILE}: both targets of every in-frame person (normalised centres); see "
            "docs/ambiguous_synthetic_data.md\n"
        )
    (root / "README.txt").write_text(readme)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder to write the dataset into")
    parser.add_argument("--n_train_images", type=int, default=400, help="training images (default 400)")
    parser.add_argument("--n_test_images", type=int, default=100, help="test images (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --root (gazefollow)")
    parser.add_argument("--format", default="gazefollow", choices=("gazefollow", "videoattentiontarget", "goo"),
                        help="on-disk format to write (default gazefollow); see datasets/synthetic_formats.py")
    parser.add_argument("--goo_variant", default="real", choices=("real", "synth"),
                        help="goo: write the pickles of GOO-Real or GOO-Synth (default real)")
    parser.add_argument("--n_train_clips", type=int, default=12, help="videoattentiontarget: training clips")
    parser.add_argument("--n_test_clips", type=int, default=4, help="videoattentiontarget: test clips")
    parser.add_argument("--frames_per_clip", type=int, default=30, help="videoattentiontarget: frames per clip")
    parser.add_argument("--depth", action="store_true", help="also write a depth map per image (loader's layout)")
    parser.add_argument("--ambiguous_split", type=float, default=None, metavar="P",
                        help="gazefollow: ambiguous scenes, each face pointing between two objects, a fraction P in "
                             "(0, 1) of the annotators at the first (clockwise) one (default: off, ordinary scenes)")
    args = parser.parse_args(argv)
    if args.ambiguous_split is not None:
        if args.format != "gazefollow":
            parser.error(f"--ambiguous_split applies to --format gazefollow, not {args.format}")
        if not 0.0 < args.ambiguous_split < 1.0:
            parser.error(f"--ambiguous_split must be strictly between 0 and 1, found {args.ambiguous_split:g}")
    if args.format == "gazefollow":
        generate_gazefollow(args.root, args.n_train_images, args.n_test_images, args.seed, args.overwrite,
                            args.ambiguous_split)
        print((Path(args.root) / "README.txt").read_text(), end="")
    elif args.format == "videoattentiontarget":
        print(synthetic_formats.generate_videoattentiontarget(args.root, args.n_train_clips, args.n_test_clips,
                                                              args.frames_per_clip, args.seed))
    else:
        print(synthetic_formats.generate_goo(args.root, args.goo_variant, args.n_train_images, args.n_test_images,
                                             args.seed))
    if args.depth:
        count = synthetic_formats.write_depth_maps(args.root, args.format)
        print(f"wrote {count} depth maps")


if __name__ == "__main__":
    main()
