"""Pure image-and-coordinate transforms for gaze following: sample the random parameters, then apply them.

Coordinate convention (one for every transform): points and boxes are in PIXELS of the current image, in the
continuous frame where the image covers [0, width] x [0, height] and pixel (i, j) covers [i, i+1) x [j, j+1).
Dividing by the image size gives the normalised coordinates of the annotation files, so a horizontal flip maps
x to width - x (normalised: x to 1 - x) and a crop at integer offsets is a pure translation.

Why not torchvision.transforms.v2: its box operations agree with these (tests/test_torchvision_equivalence.py), but
its keypoints are pixel indices (a flip maps x to width - 1 - x), and one convention must hold for boxes and points.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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
    return image.crop(crop_box), crop_annotation(annotation, crop_box, image.size)


def crop_annotation(annotation: Annotation, crop_box: tuple[int, int, int, int],
                    image_size: tuple[int, int]) -> Annotation:
    """The coordinates of `crop`: translated by the crop offset, the head box clamped to the crop."""
    left, top, right, bottom = crop_box
    width, height = image_size
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"crop box {crop_box} does not lie inside the {width}x{height} image")
    offset = np.array([left, top], dtype=np.float64)
    return Annotation(
        head_box=clamp_box(annotation.head_box - np.tile(offset, 2), (right - left, bottom - top)),
        eye_point=annotation.eye_point - offset,
        gaze_points=annotation.gaze_points - offset,
    )


def hflip(image: Image.Image, annotation: Annotation) -> tuple[Image.Image, Annotation]:
    """Mirror left-right: x -> width - x for points; the box's x_min and x_max swap roles."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), hflip_annotation(annotation, image.width)


def hflip_annotation(annotation: Annotation, width: float) -> Annotation:
    """The coordinates of `hflip` in an image `width` pixels wide."""
    x_min, y_min, x_max, y_max = annotation.head_box
    mirror = np.array([-1.0, 1.0])
    shift = np.array([width, 0.0])
    return Annotation(
        head_box=np.array([width - x_max, y_min, width - x_min, y_max], dtype=np.float64),
        eye_point=annotation.eye_point * mirror + shift,
        gaze_points=annotation.gaze_points * mirror + shift,
    )


def colour_jitter(image: Image.Image, colour: ColourJitter) -> Image.Image:
    """Change brightness, contrast and saturation (PIL's enhancer formulas, factor 1 = unchanged) and turn the hue;
    image only. See `colour_transform` for the one affine map all four steps make."""
    pixels = np.array(image.convert("RGB"), dtype=np.float64)
    matrix, offset = colour_transform(colour, grey_mean(pixels))
    return Image.fromarray(np.clip(pixels @ matrix.T + offset, 0, 255).round().astype(np.uint8))


_GREY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, PIL's RGB -> "L" weights


def grey_mean(pixels: np.ndarray) -> float:
    """Mean grey level (PIL's "L" weights) of RGB pixels [H, W, 3] in 0..255: the pivot of the contrast change."""
    return float(pixels.reshape(-1, 3).mean(axis=0) @ _GREY)


def colour_transform(colour: ColourJitter, mean_grey: float) -> tuple[np.ndarray, np.ndarray]:
    """The colour jitter as one affine map of RGB values in 0..255: `matrix @ rgb + offset`, clipped once at the end.

    Brightness scales (PIL Brightness: blend with black), contrast blends with the image's mean grey level
    `mean_grey` (PIL Contrast, pivoting on the grey mean after the brightness change), saturation blends with each
    pixel's grey level (PIL Color), and the hue turns by `colour.hue` of a full turn about the grey axis
    R = G = B (a third of a turn maps red to green). Differences from applying PIL's enhancers and an HSV hue shift
    one after the other: values are clipped to 0..255 once instead of after each step, and the hue turns on the
    circle around the grey axis rather than on HSV's hexagon (equal at multiples of a third of a turn, within a few
    levels for the small turns drawn here); both are documented in BENCHMARKS.md ("sample pipeline")."""
    brightness, contrast, saturation = colour.brightness, colour.contrast, colour.saturation
    desaturate = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _GREY)
    angle = 2.0 * np.pi * colour.hue
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotate = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * np.outer(axis, axis)
    matrix = rotate @ desaturate * (contrast * brightness)
    # The contrast pivot is grey: saturation and the hue turn leave it unchanged.
    offset = np.full(3, (1.0 - contrast) * brightness * mean_grey)
    return matrix, offset


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


def depth_tensor(depth: Image.Image, size: int, box: np.ndarray | None = None, flip: bool = False) -> torch.Tensor:
    """A greyscale depth map as the depth stream's input: the region `box` (default: all of it; pixels of `depth`)
    resized to size x size (bilinear), mirrored if `flip`, each value 0..255 mapped through matplotlib's "magma"
    colour map (the RGB+depth reference's encoding), [3, S, S] floats in [0, 1]."""
    from matplotlib import colormaps  # imported here: only runs that use depth need matplotlib in the workers

    box = None if box is None else tuple(float(v) for v in box)
    resized = depth.convert("L").resize((size, size), Image.Resampling.BILINEAR, box=box)
    if flip:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    table = colormaps["magma"](np.arange(256))[:, :3].astype(np.float32)  # 256 x RGB
    return torch.from_numpy(np.ascontiguousarray(table[np.asarray(resized, dtype=np.int64)].transpose(2, 0, 1)))


def to_normalised_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Resize to size x size (bilinear, antialiased), scale to [0, 1] and apply the ImageNet normalisation: [3, S, S]."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return normalise(torch.from_numpy(np.array(resized)).permute(2, 0, 1)[None])[0]


_SCALE = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD]).view(3, 1, 1)
_OFFSET = torch.tensor([m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1)
_GREY_WEIGHTS = torch.tensor(_GREY, dtype=torch.float32)
NO_COLOUR = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)  # colour_coefficients(None)


@functools.lru_cache(maxsize=None)
def _constants_on(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalisation's scale and offset and the grey weights on `device`, copied there once: copying a pageable
    CPU tensor to a GPU in every step would make the host wait for the GPU."""
    return _SCALE.to(device), _OFFSET.to(device), _GREY_WEIGHTS.to(device)


def normalise(pixels: torch.Tensor, colour: torch.Tensor | None = None,
              mean_grey: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 RGB images [N, 3, H, W] as contiguous float32 (x / 255 - mean) / std with the ImageNet statistics, on
    their device. With `colour` ([N, 3, 4] `colour_coefficients`) and the contrast pivot `mean_grey` [N], the colour
    jitter is one batched matrix product in that float pass, the values clipped to 0..255 before the normalisation."""
    out = pixels.to(torch.float32, copy=True)  # never the caller's tensor: the steps below work in place
    if colour is not None:
        colour = colour.to(out.device, torch.float32)
        shift = colour[:, :, 3] * mean_grey[:, None]  # [N, 3]
        out = (torch.bmm(colour[:, :, :3], out.flatten(2)) + shift[:, :, None]).view(out.shape).clamp_(0.0, 255.0)
    scale, offset, _ = _constants_on(out.device)
    return out.mul_(scale).sub_(offset)


def colour_coefficients(colour: ColourJitter | None) -> torch.Tensor:
    """A sample's colour jitter as [3, 4] float32: `colour_transform`'s matrix (3 x 3) and, last column, its offset
    per grey level of the contrast pivot (the offset is linear in the scene's mean grey, which `normalise_inputs`
    measures on the device). Identity and zeros without jitter (NO_COLOUR)."""
    if colour is None:
        return NO_COLOUR.clone()
    matrix, offset = colour_transform(colour, 1.0)
    return torch.from_numpy(np.concatenate([matrix, offset[:, None]], axis=1)).float()


def normalise_inputs(image: torch.Tensor, face: torch.Tensor,
                     colour: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene and face inputs [B, 3, S, S] as the networks take them, from the samples' uint8 pixels: converted
    to float once, colour-jittered with each sample's `colour_coefficients` ([B, 3, 4]; None: no jitter), clipped to
    0..255 and ImageNet-normalised, on whatever device the pixels are (the training step runs it on the GPU, so the
    loader workers do no float pass and copy a quarter of the bytes). The contrast pivot of both inputs is the mean
    grey level of the (resized, mirrored) scene. Equal to the per-image `colour_transform` map to float rounding
    (tests/test_sample_pipeline.py)."""
    grey = None
    if colour is not None:  # the pivot: the scene's mean grey level, for the face too
        grey = image.mean(dim=(2, 3), dtype=torch.float32) @ _constants_on(image.device)[2]  # [B], no float copy
    return normalise(image, colour, grey), normalise(face, colour, grey)


def network_inputs(batch: dict, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch's image, head_mask and face on `device`, as the networks take them (float32): the datasets' uint8
    pixels with their "colour" ([B, 3, 4]) are normalised there (`normalise_inputs`) and the uint8 head mask becomes
    float; float inputs (already normalised: stacked `model_inputs`, or a benchmark's random tensors) pass through
    (float64 ones stay float64, for a float64 model such as the parity tests').
    Copies are asynchronous (the loader pins its batches on CUDA)."""
    image, head_mask, face = (batch[key].to(device, non_blocking=True) for key in ("image", "head_mask", "face"))
    if image.dtype == torch.uint8:
        colour = batch.get("colour")
        image, face = normalise_inputs(image, face, None if colour is None else colour.to(device, non_blocking=True))
    return tuple(tensor.to(torch.promote_types(tensor.dtype, torch.float32)).contiguous(memory_format=memory_format)
                 for tensor in (image, head_mask, face))


def head_mask(head_box_normalised: np.ndarray, size: int) -> torch.Tensor:
    """A [1, S, S] uint8 map, 1 on every cell the head box (normalised x_min, y_min, x_max, y_max) overlaps (the
    networks take it as float: `network_inputs`)."""
    x_min, y_min, x_max, y_max = np.clip(np.asarray(head_box_normalised, dtype=np.float64) * size, 0, size)
    mask = np.zeros((1, size, size), dtype=np.uint8)
    mask[0, int(np.floor(y_min)) : int(np.ceil(y_max)), int(np.floor(x_min)) : int(np.ceil(x_max))] = 1
    return torch.from_numpy(mask)


@dataclass(frozen=True)
class InputPlan:
    """What the network inputs of one person are cut from, decided from the image size alone (before decoding).

    `annotation` and `frame_size` are the coordinates and the size of the augmented image (the one whose frame the
    returned coordinates are normalised to); `scene_box` and `face_box` are the regions of the UN-augmented image,
    in its pixels, that become the scene and face inputs; `flip` and `colour` are applied to those inputs after
    resizing (mirroring and per-pixel colour changes commute with resizing, up to uint8 rounding)."""

    annotation: Annotation
    frame_size: tuple[int, int]
    scene_box: np.ndarray
    face_box: np.ndarray
    flip: bool
    colour: ColourJitter | None

    def reduction(self, size: int, margin: float) -> int:
        """The largest JPEG decoding reduction (1, 2, 4 or 8) that keeps both regions at least `margin` x `size`
        pixels on each side: beyond that the inputs would lose detail the full-resolution path keeps."""
        sides = np.concatenate([self.scene_box[2:] - self.scene_box[:2], self.face_box[2:] - self.face_box[:2]])
        fits = [factor for factor in (8, 4, 2) if sides.min() / factor >= margin * size]
        return fits[0] if fits else 1


def plan_inputs(image_size: tuple[int, int], annotation: Annotation, params: AugmentParams | None) -> InputPlan:
    """The coordinates of `apply_augmentation` (jitter, crop, flip) and the regions `render_inputs` reads.

    The face region is `face_crop`'s box (the head box widened by FACE_WIDEN, clipped, rounded outward to whole
    pixels) in the augmented image, mapped back to the un-augmented one. A head box with no area is a ValueError."""
    frame = image_size
    scene_box = np.array([0, 0, *image_size], dtype=np.float64)
    flip, colour = False, None
    if params is not None:
        if params.box_jitter is not None:
            annotation = replace(annotation, head_box=jitter_head_box(annotation.head_box, params.box_jitter, frame))
        if params.crop_box is not None:
            annotation = crop_annotation(annotation, params.crop_box, frame)
            left, top, right, bottom = params.crop_box
            scene_box = np.array(params.crop_box, dtype=np.float64)
            frame = (right - left, bottom - top)
        if params.flip:
            annotation = hflip_annotation(annotation, frame[0])
        flip, colour = params.flip, params.colour
    face = face_box(annotation.head_box, frame)
    if flip:  # the box in the mirrored frame, seen in the unmirrored one
        face = np.array([frame[0] - face[2], face[1], frame[0] - face[0], face[3]])
    return InputPlan(annotation=annotation, frame_size=frame, scene_box=scene_box,
                     face_box=face + np.tile(scene_box[:2], 2), flip=flip, colour=colour)


def render_inputs(image: torch.Tensor | Image.Image, plan: InputPlan, size: int,
                  scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The network inputs of `plan` from the decoded image (uint8 [3, H, W] or a PIL image), which may be decoded at
    `scale` of the size the plan was made for (JPEG reduced-size decoding; the regions are then rounded outward to
    whole decoded pixels). Each region is resized straight from the decoded pixels (bilinear with antialiasing, as
    PIL's resize), then mirrored at input size in the copy that makes it planar (`_planar`). The colour jitter and
    the normalisation are left to `normalise_inputs`, one float pass over the batch where it is used (the GPU in
    training).

    Returns image and face [3, S, S] uint8, colour [3, 4] (`colour_coefficients` of the plan's jitter), head_mask
    [1, S, S] uint8 and head_box [4] (normalised to the augmented image, clipped to [0, 1]); see model_inputs."""
    if isinstance(image, Image.Image):
        image = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    scene, face = (_planar(_resized_region(image, box * scale, size)[0], plan.flip)
                   for box in (plan.scene_box, plan.face_box))
    head_box_normalised = np.clip(plan.annotation.head_box / np.tile(plan.frame_size, 2), 0.0, 1.0)
    return {
        "image": scene,
        "head_mask": head_mask(head_box_normalised, size),
        "face": face,
        "colour": colour_coefficients(plan.colour),
        "head_box": torch.from_numpy(head_box_normalised).float(),
    }


def _resized_region(image: torch.Tensor, box: np.ndarray, size: int) -> torch.Tensor:
    """Pixels `box` (left, top, right, bottom; rounded outward to whole pixels) of uint8 [3, H, W] as [1, 3, S, S].

    torch's uint8 antialiased bilinear resize gives PIL's values (within one level) several times faster when the
    pixels are stored channels-last, as decoders return them."""
    left, top = (int(np.floor(v)) for v in box[:2])
    right, bottom = (int(np.ceil(v)) for v in box[2:])
    region = image[None, :, max(top, 0) : bottom, max(left, 0) : right]
    return F.interpolate(region.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear",
                         antialias=True)


def _planar(pixels: torch.Tensor, flip: bool) -> torch.Tensor:
    """uint8 [3, S, S] in any memory layout (the resize returns channels-last) as a contiguous tensor, mirrored when
    `flip`: one strided copy by numpy, about 3x faster than torch's `.contiguous()` for uint8 here
    (BENCHMARKS.md, "Sample pipeline")."""
    array = pixels.numpy()
    return torch.from_numpy(np.ascontiguousarray(array[:, :, ::-1] if flip else array))


def model_inputs(image: Image.Image, head_box: np.ndarray, size: int) -> dict[str, torch.Tensor]:
    """The network inputs of one person, as training, evaluation and prediction all build them.

    `head_box` is (x_min, y_min, x_max, y_max) in PIXELS of `image` (already clamped to it). Returns image [3, S, S]
    and face [3, S, S] ImageNet-normalised (`render_inputs` then `normalise_inputs`: the values a dataset sample
    gets on the device), head_mask [1, S, S] (`head_mask`) and head_box [4], the box normalised to the image and
    clipped to [0, 1]. A head box with no area in the image is a ValueError (the caller names the annotation).
    """
    head_box = np.asarray(head_box, dtype=np.float64)
    person = Annotation(head_box, (head_box[:2] + head_box[2:]) / 2, np.zeros((0, 2)))
    inputs = render_inputs(image.convert("RGB"), plan_inputs(image.size, person, None), size)
    scene, mask, face = network_inputs({key: inputs[key][None] for key in ("image", "head_mask", "face", "colour")},
                                       torch.device("cpu"))
    return {"image": scene[0], "head_mask": mask[0], "face": face[0], "head_box": inputs["head_box"]}


def face_box(head_box: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The face region of `face_crop`: the pixel head box widened by FACE_WIDEN on each side, clipped to the image,
    its edges rounded outward to whole pixels so it always covers the box; no area after clipping is a ValueError."""
    x_min, y_min, x_max, y_max = clamp_box(widen_box(head_box, FACE_WIDEN), image_size)
    box = np.array([np.floor(x_min), np.floor(y_min), np.ceil(x_max), np.ceil(y_max)])
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(
            f"head box {np.round(head_box, 2).tolist()} has no area inside the {image_size[0]}x{image_size[1]} image"
        )
    return box


def face_crop(image: Image.Image, head_box: np.ndarray, size: int) -> torch.Tensor:
    """The face input: `face_box` of the pixel head box cut from `image` and resized to S, ImageNet-normalised."""
    return model_inputs(image, head_box, size)["face"]
