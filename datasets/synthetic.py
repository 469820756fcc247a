"""A synthetic GazeFollow-extended dataset, and the command line that writes every synthetic format.

`python -m datasets.synthetic --root DIR` writes the exact layout and annotation format of the real release (see
datasets/gazefollow.py), so the real loader, training and evaluation run on it unchanged; `--format` selects the
VideoAttentionTarget or GOO writer of datasets/synthetic_formats.py. The scenes (people whose faces show where they
look, among coloured objects) are drawn by datasets/synthetic_scenes.py; annotators disagree a little around the
target.
"""
from __future__ import annotations

import argparse
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


def _annotator_point(rng: np.random.Generator, person: Person, size: tuple[int, int]) -> np.ndarray:
    """A normalised gaze point near the target centre; a uniform, meaningless point for out-of-frame/invalid rows."""
    if person.role != "in":
        return rng.random(2)
    point = person.target.centre + rng.normal(0.0, ANNOTATOR_SPREAD * person.target.radius, size=2)
    return np.clip(point, 0, size) / np.array(size)


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


def _people_counts(rng: np.random.Generator, n_images: int) -> list[int]:
    return [int(c) for c in rng.choice(PEOPLE_PER_IMAGE, size=n_images, p=PEOPLE_PROBABILITIES)]


def _training_roles(rng: np.random.Generator, total: int) -> list[str]:
    """Exact numbers of out-of-frame and invalid people (at least one each from 3 people on), at random places."""
    n_out = max(1, round(OUT_OF_FRAME_FRACTION * total)) if total >= 3 else 0
    n_invalid = max(1, round(INVALID_FRACTION * total)) if total >= 3 else 0
    roles = np.array(["in"] * total, dtype=object)
    order = rng.permutation(total)
    roles[order[:n_out]] = "out"
    roles[order[n_out : n_out + n_invalid]] = "invalid"
    return list(roles)


def _write_split(root: Path, split: str, n_images: int, seed: int) -> dict:
    split_code = {"train": 0, "test": 1}[split]
    plan_rng = np.random.default_rng([seed, split_code])
    counts = _people_counts(plan_rng, n_images)
    roles = _training_roles(plan_rng, sum(counts)) if split == "train" else ["in"] * sum(counts)
    lines, person_id = [], 0
    stats = {"images": n_images, "people": sum(counts), "rows": 0, "in_frame": 0, "out_of_frame": 0, "invalid": 0}
    for image_index in range(n_images):
        rng = np.random.default_rng([seed, split_code, image_index])  # one image does not depend on the others
        image_roles = roles[person_id : person_id + counts[image_index]]
        image, people = _make_scene(rng, image_roles)
        path = f"{SPLIT_FOLDERS[split]}/{image_index // 1000:08d}/{image_index:08d}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / path, quality=92)
        meta = f"synthetic_{split}_{image_index:08d}.jpg"
        for person in people:
            person_id += 1
            head_box = np.concatenate([person.centre - person.radius, person.centre + person.radius])
            head_box = head_box + rng.normal(0.0, 0.04 * person.radius, size=4)  # a detector's imprecision
            if split == "train":
                inout = {"in": 1, "out": 0, "invalid": -1}[person.role]
                gaze = _annotator_point(rng, person, image.size)
                lines.append(_row(path, person_id, person, gaze, head_box, image.size, inout, meta))
                stats[{"in": "in_frame", "out": "out_of_frame", "invalid": "invalid"}[person.role]] += 1
            else:
                for _ in range(rng.integers(ANNOTATORS_RANGE[0], ANNOTATORS_RANGE[1] + 1)):
                    gaze = _annotator_point(rng, person, image.size)
                    lines.append(_row(path, person_id, person, gaze, head_box, image.size, None, meta))
                stats["in_frame"] += 1
    stats["rows"] = len(lines)
    (root / ANNOTATION_FILES[split]).write_text("\n".join(lines) + "\n")
    return stats


def generate_gazefollow(root: str | Path, n_train_images: int = 400, n_test_images: int = 100, seed: int = 0,
                        overwrite: bool = False) -> dict:
    """Write a synthetic GazeFollow-extended dataset under `root`; return counts of what was written.

    The same seed gives byte-identical annotation files (and images). An existing dataset in `root` is an error
    unless `overwrite`, which first deletes root/train, root/test2 and the annotation files.
    """
    if n_train_images < 1 or n_test_images < 1:
        raise ValueError(f"need at least one image per split, found {n_train_images} train and {n_test_images} test")
    root = Path(root)
    existing = [root / name for name in (*SPLIT_FOLDERS.values(), *ANNOTATION_FILES.values()) if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset ({', '.join(str(p) for p in existing)}); "
                              f"pass overwrite=True (--overwrite) to replace it")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    train = _write_split(root, "train", n_train_images, seed)
    test = _write_split(root, "test", n_test_images, seed)
    summary = {"root": str(root), "seed": seed, "train": train, "test": test}
    (root / "README.txt").write_text(
        "Synthetic GazeFollow-extended dataset written by `python -m datasets.synthetic` (datasets/synthetic.py).\n"
        f"seed: {seed}\n"
        f"train: {train['images']} images, {train['rows']} rows ({train['in_frame']} in frame, "
        f"{train['out_of_frame']} out of frame, {train['invalid']} invalid with inout -1)\n"
        f"test: {test['images']} images, {test['people']} people, {test['rows']} annotator rows\n"
        "Annotation format: as the GazeFollow-extended release (17 fields for train, 16 for test; head boxes in "
        "pixels, other coordinates normalised).\n"
    )
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
    args = parser.parse_args(argv)
    if args.format == "gazefollow":
        generate_gazefollow(args.root, args.n_train_images, args.n_test_images, args.seed, args.overwrite)
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
