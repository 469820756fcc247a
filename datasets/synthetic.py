"""A synthetic GazeFollow-extended dataset: drawn people whose faces show where they look, among coloured objects.

`python -m datasets.synthetic --root DIR` writes the exact layout and annotation format of the real release (see
datasets/gazefollow.py), so the real loader, training and evaluation run on it unchanged.

How the task is built: each head is a skin-coloured disc whose face (eyes, pupils, nose, hair at the back) turns
with the gaze direction; bodies are symmetric and say nothing. The target is a salient object placed along the gaze
ray; no other object lies within CONE_HALF_ANGLE of any person's ray, so the face plus the scene determine the
target. Out-of-frame people look along a ray with no object on it. Annotators disagree a little around the target.
"""
from __future__ import annotations

import argparse
import colorsys
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SPLIT_FOLDERS = {"train": "train", "test": "test2"}
ANNOTATION_FILES = {"train": "train_annotations_release.txt", "test": "test_annotations_release.txt"}
WIDTH_RANGE, HEIGHT_RANGE = (240, 400), (180, 320)  # image size in pixels, inclusive
PEOPLE_PER_IMAGE, PEOPLE_PROBABILITIES = (1, 2, 3), (0.2, 0.45, 0.35)
HEAD_DIAMETER_RANGE = (0.14, 0.22)  # fraction of the image height
OBJECT_RADIUS_RANGE = (0.045, 0.085)  # half the object size, fraction of min(width, height)
DISTRACTORS_RANGE = (3, 6)  # objects nobody looks at, inclusive
OUT_OF_FRAME_FRACTION, INVALID_FRACTION = 0.12, 0.03  # of training people
ANNOTATORS_RANGE = (8, 12)  # annotator rows per test person, inclusive
ANNOTATOR_SPREAD = 0.3  # standard deviation of an annotator's point around the object centre, in object radii
CONE_HALF_ANGLE = math.radians(20)  # no object but the target within this angle of a person's gaze ray
SHAPES = ("disc", "square", "triangle", "diamond", "ring")
SKIN_TONES = ((255, 219, 172), (241, 194, 167), (234, 192, 134), (224, 172, 105), (198, 134, 66), (141, 85, 36))
HAIR_COLOURS = ((35, 25, 20), (80, 50, 30), (150, 110, 60), (20, 20, 20), (200, 170, 110))
PLACEMENT_TRIES = 1000  # gaze directions tried per person before the whole layout is drawn again
LAYOUT_TRIES = 20


class _NoFreeDirection(Exception):
    """A person's gaze cannot be placed in this layout (rare, with three people): draw a new layout."""


@dataclass
class SceneObject:
    """A coloured shape; centre and radius (half its size) in pixels."""

    kind: str
    centre: np.ndarray
    radius: float
    colour: tuple[int, int, int]


@dataclass
class Person:
    """A drawn person; pixels, image frame (x right, y down). direction is the gaze angle atan2(dy, dx)."""

    centre: np.ndarray  # head centre
    radius: float  # head radius
    body_box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    role: str  # "in", "out" (looks out of frame) or "invalid" (drawn as "in", annotated with inout -1)
    direction: float | None = None
    target: SceneObject | None = None

    @property
    def forward(self) -> np.ndarray:
        return np.array([math.cos(self.direction), math.sin(self.direction)])

    @property
    def eye_point(self) -> np.ndarray:
        """Between the two drawn eyes (see _draw_head)."""
        return self.centre + 0.32 * self.radius * self.forward


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> tuple:
    red, green, blue = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return int(red * 255), int(green * 255), int(blue * 255)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Two muted colours in a gradient, low-frequency blotches and pixel noise: texture without salient objects."""
    first, second = (np.array(_random_colour(rng, (0.05, 0.35), (0.35, 0.85)), dtype=np.float64) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)).astype(np.float64)
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1.0)
    pixels = first + ramp[..., None] * (second - first)
    coarse = rng.integers(0, 256, size=(height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    blotches = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    pixels += 0.25 * (blotches - 128.0) + rng.normal(0.0, 6.0, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _place_people(rng: np.random.Generator, width: int, height: int, roles: list[str]) -> list[Person]:
    """One person per vertical band of the image, so heads and bodies never overlap."""
    band = width / len(roles)
    people = []
    for slot, role in enumerate(roles):
        radius = min(rng.uniform(*HEAD_DIAMETER_RANGE) * height / 2, band / 2.6)
        left = slot * band
        x = rng.uniform(left + 1.2 * radius, left + band - 1.2 * radius)
        y = rng.uniform(radius + 2, 0.6 * height)
        body = (x - 1.1 * radius, y + 0.8 * radius, x + 1.1 * radius, min(height, y + 4.0 * radius))
        people.append(Person(centre=np.array([x, y]), radius=radius, body_box=body, role=role))
    return people


def _in_cone(person: Person, direction: float, centre: np.ndarray, radius: float) -> bool:
    """Whether any part of a disc (centre, radius) lies within CONE_HALF_ANGLE of the person's gaze ray."""
    offset = centre - person.centre
    distance = float(np.hypot(*offset))
    if distance <= radius:
        return True
    difference = abs((math.atan2(offset[1], offset[0]) - direction + math.pi) % (2 * math.pi) - math.pi)
    return difference < CONE_HALF_ANGLE + math.asin(radius / distance)


def _collides(centre: np.ndarray, radius: float, people: list[Person], objects: list[SceneObject]) -> bool:
    """Whether an object disc would touch a head, a body or another object (4 pixels of margin)."""
    for person in people:
        if np.hypot(*(centre - person.centre)) < person.radius + radius + 4:
            return True
        x_min, y_min, x_max, y_max = person.body_box
        if x_min - radius - 4 < centre[0] < x_max + radius + 4 and y_min - radius - 4 < centre[1] < y_max + radius + 4:
            return True
    return any(np.hypot(*(centre - other.centre)) < other.radius + radius + 4 for other in objects)


def _free_of_gaze_rays(centre: np.ndarray, radius: float, people: list[Person]) -> bool:
    return not any(p.direction is not None and _in_cone(p, p.direction, centre, radius) for p in people)


def _new_object(rng: np.random.Generator, centre: np.ndarray, radius: float) -> SceneObject:
    return SceneObject(str(rng.choice(SHAPES)), centre, radius, _random_colour(rng, (0.55, 1.0), (0.6, 1.0)))


def _assign_gaze(rng: np.random.Generator, person: Person, people: list[Person], objects: list[SceneObject],
                 width: int, height: int) -> None:
    """Choose the person's gaze direction and, unless they look out of frame, their target object on that ray."""
    scale = min(width, height)
    for _ in range(PLACEMENT_TRIES):
        direction = rng.uniform(0, 2 * math.pi)
        if any(_in_cone(person, direction, other.centre, other.radius) for other in objects):
            continue
        if person.role == "out":
            person.direction = direction
            return
        radius = rng.uniform(*OBJECT_RADIUS_RANGE) * scale
        forward = np.array([math.cos(direction), math.sin(direction)])
        # The farthest distance along the ray at which the whole object still fits in the image.
        limits = []
        for axis, size in ((0, width), (1, height)):
            if forward[axis] > 1e-9:
                limits.append((size - radius - 2 - person.centre[axis]) / forward[axis])
            elif forward[axis] < -1e-9:
                limits.append((radius + 2 - person.centre[axis]) / forward[axis])
        nearest, farthest = person.radius + radius + 0.05 * scale, min(limits)
        if farthest < nearest:
            continue
        centre = person.centre + rng.uniform(nearest, farthest) * forward
        others = [p for p in people if p is not person]
        if _collides(centre, radius, people, objects) or not _free_of_gaze_rays(centre, radius, others):
            continue
        person.direction = direction
        person.target = _new_object(rng, centre, radius)
        objects.append(person.target)
        return
    raise _NoFreeDirection(f"person at {person.centre.round(1).tolist()} in a {width}x{height} image")


def _add_distractors(rng: np.random.Generator, people: list[Person], objects: list[SceneObject],
                     width: int, height: int) -> None:
    """Salient objects nobody looks at, off every gaze ray; a distractor that finds no free place is left out."""
    scale = min(width, height)
    for _ in range(rng.integers(DISTRACTORS_RANGE[0], DISTRACTORS_RANGE[1] + 1)):
        for _ in range(200):
            radius = rng.uniform(*OBJECT_RADIUS_RANGE) * scale
            centre = np.array([rng.uniform(radius + 2, width - radius - 2), rng.uniform(radius + 2, height - radius - 2)])
            if not _collides(centre, radius, people, objects) and _free_of_gaze_rays(centre, radius, people):
                objects.append(_new_object(rng, centre, radius))
                break


def _draw_object(draw: ImageDraw.ImageDraw, item: SceneObject) -> None:
    x, y = item.centre
    r = item.radius
    outline = tuple(int(c * 0.6) for c in item.colour)
    if item.kind == "disc":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=item.colour, outline=outline, width=2)
    elif item.kind == "square":
        side = r * 0.85
        draw.rectangle((x - side, y - side, x + side, y + side), fill=item.colour, outline=outline, width=2)
    elif item.kind == "triangle":
        draw.polygon([(x, y - r), (x + 0.87 * r, y + 0.5 * r), (x - 0.87 * r, y + 0.5 * r)], fill=item.colour,
                     outline=outline)
    elif item.kind == "diamond":
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=item.colour, outline=outline)
    elif item.kind == "ring":
        draw.ellipse((x - r, y - r, x + r, y + r), outline=item.colour, width=max(3, int(r * 0.4)))
    else:
        raise ValueError(f"unknown shape {item.kind!r}; known: {SHAPES}")


def _draw_body(rng: np.random.Generator, draw: ImageDraw.ImageDraw, person: Person) -> None:
    # A left-right symmetric torso: it must not hint at the gaze direction.
    x_min, y_min, x_max, y_max = person.body_box
    colour = _random_colour(rng, (0.2, 0.8), (0.3, 0.9))
    draw.rounded_rectangle((x_min, y_min, x_max, y_max), radius=person.radius * 0.5, fill=colour)


def _draw_head(rng: np.random.Generator, draw: ImageDraw.ImageDraw, person: Person) -> None:
    """A face that turns with the gaze: hair at the back, eyes and pupils forward, the nose pointing the way."""
    x, y = person.centre
    r = person.radius
    forward = person.forward
    side = np.array([-forward[1], forward[0]])
    skin = np.clip(np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.integers(-12, 13, size=3), 0, 255)
    skin = tuple(int(c) for c in skin)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=skin, outline=tuple(int(c * 0.7) for c in skin), width=1)
    back = math.degrees(person.direction + math.pi)  # PIL angles run clockwise from +x, as atan2 does with y down
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    draw.chord((x - r, y - r, x + r, y + r), back - 70, back + 70, fill=hair)
    for sign in (-1, 1):
        eye = person.centre + 0.32 * r * forward + sign * 0.4 * r * side
        pupil = eye + 0.08 * r * forward
        draw.ellipse((eye[0] - 0.2 * r, eye[1] - 0.2 * r, eye[0] + 0.2 * r, eye[1] + 0.2 * r), fill=(250, 250, 250))
        draw.ellipse((pupil[0] - 0.11 * r, pupil[1] - 0.11 * r, pupil[0] + 0.11 * r, pupil[1] + 0.11 * r),
                     fill=(20, 20, 30))
    base = person.centre + 0.55 * r * forward
    tip = person.centre + 0.97 * r * forward
    nose = [tuple(base + 0.17 * r * side), tuple(base - 0.17 * r * side), tuple(tip)]
    draw.polygon(nose, fill=tuple(int(c * 0.72) for c in skin))


def _layout(rng: np.random.Generator, roles: list[str]) -> tuple[int, int, list[Person], list[SceneObject]]:
    """Image size, people and objects; a layout where some gaze finds no free direction is drawn again."""
    for _ in range(LAYOUT_TRIES):
        width = int(rng.integers(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1))
        height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
        people = _place_people(rng, width, height, roles)
        objects: list[SceneObject] = []
        try:
            for person in people:
                _assign_gaze(rng, person, people, objects, width, height)
        except _NoFreeDirection:
            continue
        _add_distractors(rng, people, objects, width, height)
        return width, height, people, objects
    raise RuntimeError(f"no layout for {len(roles)} people found in {LAYOUT_TRIES} tries")


def _make_scene(rng: np.random.Generator, roles: list[str]) -> tuple[Image.Image, list[Person]]:
    width, height, people, objects = _layout(rng, roles)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    for person in people:
        _draw_body(rng, draw, person)
    for item in objects:
        _draw_object(draw, item)
    for person in people:
        _draw_head(rng, draw, person)
    return image, people


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
    from datasets import synthetic_formats  # imported here: it builds on this module's drawing

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
