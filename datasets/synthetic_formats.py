"""Synthetic VideoAttentionTarget clips, GOO pickles and depth maps, in the real on-disk formats, drawn with the scenes
of datasets/synthetic_scenes.py so every loader runs end to end without the real data (the command line is
`python -m datasets.synthetic --format ...`).

- VAT (`generate_videoattentiontarget`): clips of a fixed scene in which each person's head drifts, their gaze target
  switches once from one object to another, and for a stretch of frames they look out of the frame (annotated -1, -1).
  Annotations in pixels, one `s<NN>.txt` per person, head boxes with detector-like jitter.
- GOO (`generate_goo`): one person per image, every coordinate written on the 640 x 480 scale whatever the image size
  (the images are 16:9 like GOO-Real's), file names with Windows backslashes as in the release.
- Depth (`write_depth_maps`): a greyscale map per image in each loader's depth layout: a vertical ramp (the floor
  comes nearer towards the bottom) plus the blurred brightness of the scene, so the map is aligned with the image.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from datasets import goo as goo_format
from datasets.gazefollow import DEPTH_FOLDERS
from datasets.synthetic_scenes import (
    Person, _background, _draw_body, _draw_head, _draw_object, _in_cone, _layout,
)

VAT_SHOWS = ("Synthetic Show", "Another Show")  # names with spaces, as the real ones ("West World")
VAT_SPLITS = {"train": 0, "test": 1}
HEAD_DRIFT = 0.6  # largest head speed, pixels per frame
OUT_OF_FRAME_FRACTION = 0.25  # of each person's frames, one contiguous stretch
GOO_IMAGE_SIZE = (320, 180)  # a 16:9 image, like GOO-Real's 1920 x 1080, annotated on the 640 x 480 scale


def _out_of_frame_direction(rng: np.random.Generator, person: Person, objects, tries: int = 500) -> float | None:
    """A gaze direction with no object within the gaze cone, or None when the scene leaves none."""
    for _ in range(tries):
        direction = rng.uniform(0, 2 * math.pi)
        if not any(_in_cone(person, direction, item.centre, item.radius) for item in objects):
            return direction
    return None


def _draw_frame(background: Image.Image, people: list[Person], objects, seeds: list[int]) -> Image.Image:
    """The scene with every person at their current place and direction; `seeds` keep each person's colours fixed."""
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for person, seed in zip(people, seeds):
        _draw_body(np.random.default_rng(seed), draw, person)
    for item in objects:
        _draw_object(draw, item)
    for person, seed in zip(people, seeds):
        _draw_head(np.random.default_rng(seed + 1), draw, person)
    return image


def _write_vat_clip(root: Path, split: str, show: str, clip_index: int, n_frames: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, VAT_SPLITS[split], clip_index])
    roles = ["in"] * int(rng.integers(1, 3))
    width, height, people, objects = _layout(rng, roles)
    background = _background(rng, width, height)
    first_frame = 1000 * (clip_index + 1) + int(rng.integers(0, 500))
    clip = f"{first_frame}_{first_frame + n_frames - 1}"
    plans = []
    for person in people:
        others = [item for item in objects if item is not person.target]
        out_length = int(round(OUT_OF_FRAME_FRACTION * n_frames))
        out_start = int(rng.integers(0, n_frames - out_length + 1))
        plans.append({
            "start": person.centre.copy(), "velocity": rng.uniform(-HEAD_DRIFT, HEAD_DRIFT, size=2),
            "first": person.target, "second": others[int(rng.integers(len(others)))] if others else person.target,
            "switch": int(rng.integers(n_frames // 3, max(n_frames // 3 + 1, 2 * n_frames // 3))),
            "out": range(out_start, out_start + out_length), "out_direction": _out_of_frame_direction(rng, person, objects),
            "rows": [], "seed": int(rng.integers(2**31)),
        })
    counts = {"frames": n_frames, "person_frames": 0, "out_of_frame": 0}
    frame_folder = root / "images" / show / clip
    frame_folder.mkdir(parents=True, exist_ok=True)
    for t in range(n_frames):
        looking_out = []
        for person, plan in zip(people, plans):
            margin = person.radius + 1
            person.centre = np.clip(plan["start"] + t * plan["velocity"], margin, [width - margin, height - margin])
            out = t in plan["out"] and plan["out_direction"] is not None
            target = plan["first"] if t < plan["switch"] else plan["second"]
            offset = target.centre - person.centre
            person.direction = plan["out_direction"] if out else math.atan2(offset[1], offset[0])
            looking_out.append(out)
        frame = f"{first_frame + t:08d}.jpg"
        _draw_frame(background, people, objects, [plan["seed"] for plan in plans]).save(frame_folder / frame,
                                                                                       quality=90)
        for person, plan, out in zip(people, plans, looking_out):
            box = np.concatenate([person.centre - person.radius, person.centre + person.radius])
            box = np.clip(box + rng.normal(0.0, 0.05 * person.radius, size=4), 0, [width, height, width, height])
            target = plan["first"] if t < plan["switch"] else plan["second"]
            gaze = (-1, -1) if out else tuple(int(round(v)) for v in np.clip(target.centre, 0, [width - 1, height - 1]))
            plan["rows"].append(f"{frame},{','.join(str(int(round(v))) for v in box)},{gaze[0]},{gaze[1]}")
            counts["person_frames"] += 1
            counts["out_of_frame"] += int(out)
    annotation_folder = root / "annotations" / split / show / clip
    annotation_folder.mkdir(parents=True, exist_ok=True)
    for number, plan in enumerate(plans):
        (annotation_folder / f"s{number:02d}.txt").write_text("\n".join(plan["rows"]) + "\n")
    return counts


def generate_videoattentiontarget(root: str | Path, n_train_clips: int = 12, n_test_clips: int = 4,
                                  frames_per_clip: int = 30, seed: int = 0) -> dict:
    """Write a synthetic VideoAttentionTarget dataset under `root` (images/ and annotations/); return counts."""
    if n_train_clips < 1 or n_test_clips < 1 or frames_per_clip < 4:
        raise ValueError("need at least one clip per split and 4 frames per clip, found "
                         f"{n_train_clips} train clips, {n_test_clips} test clips, {frames_per_clip} frames")
    root = Path(root)
    if (root / "annotations").exists():
        raise FileExistsError(f"{root} already holds VideoAttentionTarget annotations; choose an empty folder")
    summary = {"root": str(root), "seed": seed}
    for split, n_clips in (("train", n_train_clips), ("test", n_test_clips)):
        totals = {"clips": n_clips, "frames": 0, "person_frames": 0, "out_of_frame": 0}
        for clip_index in range(n_clips):
            show = VAT_SHOWS[clip_index % len(VAT_SHOWS)]
            for key, value in _write_vat_clip(root, split, show, clip_index, frames_per_clip, seed).items():
                totals[key] += value
        summary[split] = totals
    return summary


def generate_goo(root: str | Path, variant: str = "real", n_train_images: int = 40, n_test_images: int = 12,
                 seed: int = 0) -> dict:
    """Write a synthetic GOO dataset (pickles named as the `variant`'s release, images under `root`); return counts."""
    root = Path(root)
    width, height = GOO_IMAGE_SIZE
    scale = np.array(goo_format.COORDINATE_SCALE) / np.array([width, height])  # pixels -> the 640 x 480 scale
    summary = {"root": str(root), "seed": seed, "variant": variant}
    for split, n_images in (("train", n_train_images), ("test", n_test_images)):
        pickle_path = root / goo_format.ANNOTATION_FILES[variant][split]
        if pickle_path.exists():
            raise FileExistsError(f"{pickle_path} already exists; choose an empty folder")
        records = []
        for index in range(n_images):
            rng = np.random.default_rng([seed, VAT_SPLITS[split], index, 7])
            layout_width, layout_height, people, objects = _layout(rng, ["in"])
            image = _background(rng, layout_width, layout_height)
            draw = ImageDraw.Draw(image)
            _draw_body(rng, draw, people[0])
            for item in objects:
                _draw_object(draw, item)
            _draw_head(rng, draw, people[0])
            # GOO images all have one size: stretch the drawn scene to it; every coordinate follows the same scaling.
            to_image = np.array([width / layout_width, height / layout_height])
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            folder = f"{index // 10:02d}\\cam1"
            filename = f"{folder}\\img_{split}_{index:05d}.jpg"
            (root / filename.replace("\\", "/")).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / filename.replace("\\", "/"), quality=90)
            person = people[0]
            eye = person.eye_point * to_image * scale
            head = np.concatenate([person.centre - person.radius, person.centre + person.radius]) * np.tile(
                to_image * scale, 2)
            boxes = [list(np.concatenate([o.centre - o.radius, o.centre + o.radius]) * np.tile(to_image * scale, 2))
                     for o in objects]
            target = objects.index(person.target)
            gaze = person.target.centre * to_image * scale
            records.append({
                "filename": filename, "width": 640, "height": 480,
                "ann": {"bboxes": boxes + [list(head)], "labels": list(range(len(boxes))) + [-1]},
                "gaze_item": target, "gazeIdx": target, "gaze_cx": float(gaze[0]), "gaze_cy": float(gaze[1]),
                "hx": float(eye[0]), "hy": float(eye[1]), "seg": None, "occluded": False,
            })
        pickle_path.parent.mkdir(parents=True, exist_ok=True)
        with open(pickle_path, "wb") as handle:
            pickle.dump(records, handle)
        summary[split] = {"images": n_images, "records": len(records)}
    return summary


def synthetic_depth(image: Image.Image) -> Image.Image:
    """A greyscale stand-in for a monocular depth estimate of `image` (brighter = nearer): a vertical ramp plus the
    blurred brightness of the scene, so objects and people show in it where they are in the image."""
    width, height = image.size
    ramp = np.linspace(40.0, 200.0, height)[:, None].repeat(width, axis=1)
    blurred = np.asarray(image.convert("L").filter(ImageFilter.GaussianBlur(radius=3)), dtype=np.float64)
    return Image.fromarray(np.clip(0.6 * ramp + 0.4 * blurred, 0, 255).astype(np.uint8))


def write_depth_maps(root: str | Path, dataset_format: str) -> int:
    """Write a depth map for every image of a dataset under `root`, in the loader's depth layout; return the count.

    gazefollow: train/... -> depth/..., test2/... -> depth2/...; videoattentiontarget: images/... -> depths/...;
    goo: <root>/... -> <root>_depth/...
    """
    root = Path(root)
    if dataset_format == "gazefollow":
        pairs = [(image, root / DEPTH_FOLDERS[folder] / image.relative_to(root / folder))
                 for folder in DEPTH_FOLDERS for image in sorted((root / folder).rglob("*.jpg"))]
    elif dataset_format == "videoattentiontarget":
        pairs = [(image, root / "depths" / image.relative_to(root / "images"))
                 for image in sorted((root / "images").rglob("*.jpg"))]
    elif dataset_format == "goo":
        depth_root = Path(f"{root}_depth")
        pairs = [(image, depth_root / image.relative_to(root)) for image in sorted(root.rglob("*.jpg"))]
    else:
        raise ValueError(f"unknown dataset format {dataset_format!r}; known: gazefollow, videoattentiontarget, goo")
    for image_path, depth_path in pairs:
        depth_path.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image_path) as image:
            synthetic_depth(image).save(depth_path, quality=95)
    return len(pairs)
