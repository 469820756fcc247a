"""The drawn scenes of the synthetic datasets: people whose faces show where they look, among coloured objects.

Each head is a skin-coloured disc whose face (eyes, pupils, nose, hair at the back) turns with the gaze direction;
bodies are symmetric and say nothing. The target is a salient object placed along the gaze ray; no other object lies
within CONE_HALF_ANGLE of any person's ray, so the face plus the scene determine the target. Out-of-frame people look
along a ray with no object on it. In an ambiguous scene (`_make_scene(..., ambiguous=True)`) each in-frame person's
face points exactly between TWO equal objects, at the same distance and the same angle on either side of the face
direction, and no other object lies in the fan around both: the image cannot tell which one is looked at (see
docs/ambiguous_synthetic_data.md). The writers of each on-disk format build on this file: datasets/synthetic.py
(GazeFollow, and the command line) and datasets/synthetic_formats.py (VideoAttentionTarget, GOO, depth maps).
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

WIDTH_RANGE, HEIGHT_RANGE = (240, 400), (180, 320)  # image size in pixels, inclusive
HEAD_DIAMETER_RANGE = (0.14, 0.22)  # fraction of the image height
OBJECT_RADIUS_RANGE = (0.045, 0.085)  # half the object size, fraction of min(width, height)
DISTRACTORS_RANGE = (3, 6)  # objects nobody looks at, inclusive
CONE_HALF_ANGLE = math.radians(20)  # no object but the target within this angle of a person's gaze ray
SHAPES = ("disc", "square", "triangle", "diamond", "ring")
SKIN_TONES = ((255, 219, 172), (241, 194, 167), (234, 192, 134), (224, 172, 105), (198, 134, 66), (141, 85, 36))
HAIR_COLOURS = ((35, 25, 20), (80, 50, 30), (150, 110, 60), (20, 20, 20), (200, 170, 110))
PLACEMENT_TRIES = 1000  # gaze directions tried per person before the whole layout is drawn again
LAYOUT_TRIES = 20
# Ambiguous scenes: each target's angle from the face direction (drawn per person), and the smallest distance between
# the two targets' centres in normalised image coordinates, so that the point between them is more than 0.1 (the
# larger coverage radius of eval/distribution.py) from either.
AMBIGUOUS_HALF_ANGLE_RANGE = (math.radians(20), math.radians(32))
AMBIGUOUS_MIN_SEPARATION = 0.25


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
    # Ambiguous scenes: the second object, at `spread` radians on the other side of the face direction from `target`
    # (which is at direction + spread: clockwise on screen, as y points down). None and 0.0 for one target.
    second_target: SceneObject | None = None
    spread: float = 0.0

    @property
    def gaze_half_angle(self) -> float:
        """Half the angle of the fan around the face direction that no other object may enter."""
        return CONE_HALF_ANGLE + self.spread

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


def _in_cone(person: Person, direction: float, centre: np.ndarray, radius: float,
             half_angle: float = CONE_HALF_ANGLE) -> bool:
    """Whether any part of a disc (centre, radius) lies within `half_angle` of the person's gaze ray."""
    offset = centre - person.centre
    distance = float(np.hypot(*offset))
    if distance <= radius:
        return True
    difference = abs((math.atan2(offset[1], offset[0]) - direction + math.pi) % (2 * math.pi) - math.pi)
    return difference < half_angle + math.asin(radius / distance)


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
    return not any(p.direction is not None and _in_cone(p, p.direction, centre, radius, p.gaze_half_angle)
                   for p in people)


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
        nearest = person.radius + radius + 0.05 * scale
        farthest = _farthest_fit(person, forward, radius, width, height)
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


def _farthest_fit(person: Person, forward: np.ndarray, radius: float, width: int, height: int) -> float:
    """The farthest distance along the ray from the head centre at which a whole object still fits in the image."""
    limits = []
    for axis, size in ((0, width), (1, height)):
        if forward[axis] > 1e-9:
            limits.append((size - radius - 2 - person.centre[axis]) / forward[axis])
        elif forward[axis] < -1e-9:
            limits.append((radius + 2 - person.centre[axis]) / forward[axis])
    return min(limits)


def _assign_ambiguous_gaze(rng: np.random.Generator, person: Person, people: list[Person],
                           objects: list[SceneObject], width: int, height: int) -> None:
    """Choose the person's face direction and two equal objects, one `spread` radians on each side of it at the same
    distance from the head centre; no other object lies within `person.gaze_half_angle` of the face direction."""
    scale = min(width, height)
    for _ in range(PLACEMENT_TRIES):
        direction = rng.uniform(0, 2 * math.pi)
        spread = rng.uniform(*AMBIGUOUS_HALF_ANGLE_RANGE)
        if any(_in_cone(person, direction, other.centre, other.radius, CONE_HALF_ANGLE + spread) for other in objects):
            continue
        radius = rng.uniform(*OBJECT_RADIUS_RANGE) * scale
        forwards = [np.array([math.cos(direction + side * spread), math.sin(direction + side * spread)])
                    for side in (1, -1)]
        nearest = person.radius + radius + 0.05 * scale
        farthest = min(_farthest_fit(person, forward, radius, width, height) for forward in forwards)
        if farthest < nearest:
            continue
        distance = rng.uniform(nearest, farthest)
        centres = [person.centre + distance * forward for forward in forwards]
        if np.hypot(*((centres[0] - centres[1]) / np.array([width, height]))) < AMBIGUOUS_MIN_SEPARATION:
            continue
        others = [p for p in people if p is not person]
        if any(_collides(centre, radius, people, objects) or not _free_of_gaze_rays(centre, radius, others)
               for centre in centres):
            continue
        person.direction, person.spread = direction, spread
        person.target, person.second_target = (_new_object(rng, centre, radius) for centre in centres)
        objects.extend((person.target, person.second_target))
        return
    raise _NoFreeDirection(f"person at {person.centre.round(1).tolist()} in a {width}x{height} image (ambiguous)")


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


def _layout(rng: np.random.Generator, roles: list[str],
            ambiguous: bool = False) -> tuple[int, int, list[Person], list[SceneObject]]:
    """Image size, people and objects; a layout where some gaze finds no free direction is drawn again. With
    `ambiguous`, every person not looking out of frame gets two targets (`_assign_ambiguous_gaze`)."""
    for _ in range(LAYOUT_TRIES):
        width = int(rng.integers(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1))
        height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
        people = _place_people(rng, width, height, roles)
        objects: list[SceneObject] = []
        try:
            for person in people:
                assign = _assign_ambiguous_gaze if ambiguous and person.role != "out" else _assign_gaze
                assign(rng, person, people, objects, width, height)
        except _NoFreeDirection:
            continue
        _add_distractors(rng, people, objects, width, height)
        return width, height, people, objects
    raise RuntimeError(f"no layout for {len(roles)} people found in {LAYOUT_TRIES} tries")


def _make_scene(rng: np.random.Generator, roles: list[str],
                ambiguous: bool = False) -> tuple[Image.Image, list[Person]]:
    width, height, people, objects = _layout(rng, roles, ambiguous)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    for person in people:
        _draw_body(rng, draw, person)
    for item in objects:
        _draw_object(draw, item)
    for person in people:
        _draw_head(rng, draw, person)
    return image, people
