"""Pure image-and-coordinate transforms for gaze following: sample the random parameters, then apply them.

Coordinate convention (one for every transform): points and boxes are in PIXELS of the current image, in the
continuous frame where the image covers [0, width] x [0, height] and pixel (i, j) covers [i, i+1) x [j, j+1).
Dividing by the image size gives the normalised coordinates of the annotation files, so a horizontal flip maps
x to width - x (normalised: x to 1 - x) and a crop at integer offsets is a pure translation.

Why not torchvision.transforms.v2: its box operations agree with these (tests/test_torchvision_equivalence.py), but
its keypoints are pixel indices (a flip maps x to width - 1 - x), and one convention must hold for boxes and points.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image, ImageEnhance

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUGMENT_PROBABILITY = 0.5  # each training augmentation is applied independently with this probability
BOX_JITTER_MAX = 0.2  # head-box jitter moves each side outward by U(0, 0.2) x the box size (the references' range)
BRIGHTNESS_RANGE, CONTRAST_RANGE, SATURATION_RANGE = (0.5, 1.5), (0.5, 1.5), (0.0, 1.5)
HUE_RANGE = (-0.05, 0.05)  # fraction of the hue circle; small so that skin and object colours stay plausible
FACE_WIDEN = 0.1  # the face crop moves each side of the head box outward by 10 % of the box width / height


@dataclass(frozen=True)
class Annotation:
    """The coordinates of one person, in pixels of the image they belong to (see the module docstring).

    `gaze_points` holds the in-frame gaze points only, shape (N, 2): empty for an out-of-frame person, whose
    annotated point is meaningless and must not constrain a crop.
    """

    head_box: np.ndarray  # (4,) x_min, y_min, x_max, y_max
    eye_point: np.ndarray  # (2,) x, y
    gaze_points: np.ndarray  # (N, 2) x, y

    def __post_init__(self):
        for name, shape in (("head_box", (4,)), ("eye_point", (2,))):
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"Annotation.{name}: expected shape {shape}, found {np.shape(getattr(self, name))}")
        if np.ndim(self.gaze_points) != 2 or np.shape(self.gaze_points)[1] != 2:
            raise ValueError(f"Annotation.gaze_points: expected shape (N, 2), found {np.shape(self.gaze_points)}")


@dataclass(frozen=True)
class ColourJitter:
    """Factors of a colour change: 1 leaves brightness/contrast/saturation unchanged, hue is a shift in turns."""

    brightness: float
    contrast: float
    saturation: float
    hue: float


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of one training augmentation; None / False means the step is skipped.

    `box_jitter` is the outward move of each head-box side as a fraction of the box size; `crop_box` is
    (left, top, right, bottom) in integer pixels of the image after the jitter (the jitter does not change it).
    """

    box_jitter: float | None
    crop_box: tuple[int, int, int, int] | None
    flip: bool
    colour: ColourJitter | None


def clamp_box(box: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Clip a pixel box (x_min, y_min, x_max, y_max) to an image of (width, height)."""
    width, height = image_size
    return np.clip(np.asarray(box, dtype=np.float64), 0.0, [width, height, width, height])


def widen_box(box: np.ndarray, fraction: float) -> np.ndarray:
    """Move each side of a box outward by `fraction` of the box width (left, right) or height (top, bottom)."""
    x_min, y_min, x_max, y_max = box
    dx, dy = fraction * (x_max - x_min), fraction * (y_max - y_min)
    return np.array([x_min - dx, y_min - dy, x_max + dx, y_max + dy], dtype=np.float64)


def sample_augmentation(rng: np.random.Generator, image_size: tuple[int, int], annotation: Annotation) -> AugmentParams:
    """Draw the training augmentation of one sample (the references' set, each step with probability 0.5).

    The draws happen in a fixed order and always the same number of them, so a generator seeded per sample gives
    the same parameters whatever other code did before. The crop keeps the jittered head box, the eye point and
    every in-frame gaze point inside it.
    """
    width, height = image_size
    draws = rng.random(4)  # one decision per step: jitter, crop, flip, colour
    jitter_fraction = rng.uniform(0.0, BOX_JITTER_MAX)
    crop_unit = rng.random(4)  # positions of left, top, right, bottom within their allowed ranges
    colour = ColourJitter(
        brightness=rng.uniform(*BRIGHTNESS_RANGE),
        contrast=rng.uniform(*CONTRAST_RANGE),
        saturation=rng.uniform(*SATURATION_RANGE),
        hue=rng.uniform(*HUE_RANGE),
    )
    box_jitter = jitter_fraction if draws[0] < AUGMENT_PROBABILITY else None
    head_box = annotation.head_box if box_jitter is None else jitter_head_box(annotation.head_box, box_jitter, image_size)

    crop_box = None
    if draws[1] < AUGMENT_PROBABILITY:
        keep = np.concatenate([head_box.reshape(2, 2), annotation.eye_point.reshape(1, 2), annotation.gaze_points])
        keep = np.clip(keep, 0.0, [width, height])
        keep_min = np.floor(keep.min(axis=0)).astype(int)
        keep_max = np.ceil(keep.max(axis=0)).astype(int)
        # Integer edges make the crop an exact translation: left/top uniform over 0..keep_min,
        # right/bottom uniform over keep_max..size (crop_unit < 1, so the floor never passes the range's end).
        left, top = np.floor(crop_unit[:2] * (keep_min + 1)).astype(int)
        right, bottom = keep_max + np.floor(crop_unit[2:] * (np.array([width, height]) - keep_max + 1)).astype(int)
        crop_box = (int(left), int(top), int(right), int(bottom))
    return AugmentParams(
        box_jitter=box_jitter,
        crop_box=crop_box,
        flip=bool(draws[2] < AUGMENT_PROBABILITY),
        colour=colour if draws[3] < AUGMENT_PROBABILITY else None,
    )


AUGMENTATION_STEPS = ("jitter", "crop", "flip", "colour")  # the names of AugmentParams' steps (train_augmentations)


def restrict_augmentation(params: AugmentParams, steps) -> AugmentParams:
    """`params` with the steps not named in `steps` (AUGMENTATION_STEPS) switched off; the draws stay the same."""
    unknown = set(steps) - set(AUGMENTATION_STEPS)
    if unknown:
        raise ValueError(f"unknown augmentation steps {sorted(unknown)}; known: {list(AUGMENTATION_STEPS)}")
    return AugmentParams(box_jitter=params.box_jitter if "jitter" in steps else None,
                         crop_box=params.crop_box if "crop" in steps else None,
                         flip=params.flip and "flip" in steps,
                         colour=params.colour if "colour" in steps else None)


def jitter_head_box(head_box: np.ndarray, fraction: float, image_size: tuple[int, int]) -> np.ndarray:
    """Enlarge the head box by `fraction` of its size on every side, clipped to the image."""
    return clamp_box(widen_box(head_box, fraction), image_size)


def crop(image: Image.Image, annotation: Annotation,
         crop_box: tuple[int, int, int, int]) -> tuple[Image.Image, Annotation]:
    """Cut `crop_box` (left, top, right, bottom, integer pixels inside the image) and translate every coordinate."""
    left, top, right, bottom = crop_box
    if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
        raise ValueError(f"crop box {crop_box} does not lie inside the {image.width}x{image.height} image")
    offset = np.array([left, top], dtype=np.float64)
    return image.crop(crop_box), Annotation(
        head_box=clamp_box(annotation.head_box - np.tile(offset, 2), (right - left, bottom - top)),
        eye_point=annotation.eye_point - offset,
        gaze_points=annotation.gaze_points - offset,
    )


def hflip(image: Image.Image, annotation: Annotation) -> tuple[Image.Image, Annotation]:
    """Mirror left-right: x -> width - x for points; the box's x_min and x_max swap roles."""
    width = image.width
    x_min, y_min, x_max, y_max = annotation.head_box
    mirror = np.array([-1.0, 1.0])
    shift = np.array([width, 0.0])
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Annotation(
        head_box=np.array([width - x_max, y_min, width - x_min, y_max], dtype=np.float64),
        eye_point=annotation.eye_point * mirror + shift,
        gaze_points=annotation.gaze_points * mirror + shift,
    )


def colour_jitter(image: Image.Image, colour: ColourJitter) -> Image.Image:
    """Change brightness, contrast, saturation (PIL enhancers, factor 1 = unchanged) and shift the hue; image only."""
    image = ImageEnhance.Brightness(image).enhance(colour.brightness)
    image = ImageEnhance.Contrast(image).enhance(colour.contrast)
    image = ImageEnhance.Color(image).enhance(colour.saturation)
    if colour.hue != 0.0:
        hue, saturation, value = image.convert("HSV").split()
        # PIL stores hue in 0..255 for a full turn: the shift wraps around the circle as hue should.
        shifted = (np.asarray(hue, dtype=np.int64) + int(round(colour.hue * 256))) % 256
        image = Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8)), saturation, value)).convert("RGB")
    return image


def apply_augmentation(image: Image.Image, annotation: Annotation,
                       params: AugmentParams) -> tuple[Image.Image, Annotation]:
    """Apply sampled parameters in the references' order: head-box jitter, crop, flip, colour."""
    if params.box_jitter is not None:
        annotation = replace(annotation, head_box=jitter_head_box(annotation.head_box, params.box_jitter, image.size))
    if params.crop_box is not None:
        image, annotation = crop(image, annotation, params.crop_box)
    if params.flip:
        image, annotation = hflip(image, annotation)
    if params.colour is not None:
        image = colour_jitter(image, params.colour)
    return image, annotation


def apply_geometry(aligned: Image.Image, params: AugmentParams) -> Image.Image:
    """The geometric steps of `params` (crop, flip) applied to a map aligned pixel for pixel with the image, such as
    a depth map; the colour change is skipped (a depth map is not a colour) and the head-box jitter moves no pixel."""
    if params.crop_box is not None:
        aligned = aligned.crop(params.crop_box)
    if params.flip:
        aligned = aligned.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return aligned


def depth_tensor(depth: Image.Image, size: int) -> torch.Tensor:
    """A greyscale depth map as the depth stream's input: resized to size x size (bilinear), each value 0..255 mapped
    through matplotlib's "magma" colour map (the RGB+depth reference's encoding), [3, S, S] floats in [0, 1]."""
    from matplotlib import colormaps  # imported here: only runs that use depth need matplotlib in the workers

    resized = np.asarray(depth.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.int64)
    table = colormaps["magma"](np.arange(256))[:, :3].astype(np.float32)  # 256 x RGB
    return torch.from_numpy(np.ascontiguousarray(table[resized].transpose(2, 0, 1)))


def to_normalised_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Resize to size x size (bilinear, antialiased), scale to [0, 1] and apply the ImageNet normalisation: [3, S, S]."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def head_mask(head_box_normalised: np.ndarray, size: int) -> torch.Tensor:
    """A [1, S, S] float map, 1 on every cell the head box (normalised x_min, y_min, x_max, y_max) overlaps."""
    x_min, y_min, x_max, y_max = np.clip(np.asarray(head_box_normalised, dtype=np.float64) * size, 0, size)
    mask = torch.zeros(1, size, size)
    mask[0, int(np.floor(y_min)) : int(np.ceil(y_max)), int(np.floor(x_min)) : int(np.ceil(x_max))] = 1.0
    return mask


def model_inputs(image: Image.Image, head_box: np.ndarray, size: int) -> dict[str, torch.Tensor]:
    """The network inputs of one person, as training, evaluation and prediction all build them.

    `head_box` is (x_min, y_min, x_max, y_max) in PIXELS of `image` (already clamped to it). Returns image [3, S, S]
    and face [3, S, S] ImageNet-normalised (`to_normalised_tensor`, `face_crop`), head_mask [1, S, S]
    (`head_mask`) and head_box [4], the box normalised to the image and clipped to [0, 1].
    A head box with no area in the image is a ValueError (the caller names the annotation).
    """
    face = face_crop(image, head_box, size)
    head_box_normalised = np.clip(np.asarray(head_box, dtype=np.float64) / np.tile(image.size, 2), 0.0, 1.0)
    return {
        "image": to_normalised_tensor(image, size),
        "head_mask": head_mask(head_box_normalised, size),
        "face": face,
        "head_box": torch.from_numpy(head_box_normalised).float(),
    }


def face_crop(image: Image.Image, head_box: np.ndarray, size: int) -> torch.Tensor:
    """The face input: the pixel head box widened by FACE_WIDEN on each side, clipped to the image, resized to S.

    The crop edges are rounded outward to whole pixels so the crop always covers the box; a box with no area
    after clipping is an error (the caller names the annotation).
    """
    x_min, y_min, x_max, y_max = clamp_box(widen_box(head_box, FACE_WIDEN), image.size)
    box = (int(np.floor(x_min)), int(np.floor(y_min)), int(np.ceil(x_max)), int(np.ceil(y_max)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(
            f"head box {np.round(head_box, 2).tolist()} has no area inside the {image.width}x{image.height} image"
        )
    return to_normalised_tensor(image.crop(box), size)
