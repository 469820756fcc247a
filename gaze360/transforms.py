"""Head-crop transforms of the multi-crop models, written here (no torchvision) with torchvision's semantics.

Boxes are (left, top, width, height) in integer pixels of the image they apply to. Random parameters are drawn
first (`sample_resized_crop`) and applied after, so tests check boxes by hand. Resizing is PIL bilinear.

Per frame: Resize((S, S)) (the original squashes the head crop to a square) or Resize(S) (shorter side, this
project's option), or in training optionally RandomResizedCrop(S, scale [s, 1], ratio [3/4, 4/3]) (this project's
augmentation, off by default). Then each copy c of the crop list: CenterCrop(c) -> Resize((S, S)),
ImageNet-normalised; c > S zooms out with black padding. With square resize and S = 224 this is the original's
`centercrop_transform(c, 224)`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from datasets.transforms import to_normalised_tensor

RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)  # aspect-ratio range of RandomResizedCrop (torchvision's default)
ATTEMPTS = 10  # RandomResizedCrop tries this many boxes before falling back to a centre crop


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Resize(size) with an int: the shorter side becomes `size`, the longer keeps the aspect ratio (truncated)."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image if new == image.size else image.resize(new, Image.Resampling.BILINEAR)


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """CenterCrop(crop) of a width x height image: left = round((W - c) / 2), top = round((H - c) / 2)."""
    if crop > width or crop > height:
        raise ValueError(f"centre crop {crop} is larger than the image {width}x{height}")
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0)), crop, crop


def sample_resized_crop(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float],
                        ratio: tuple[float, float] = RATIO_RANGE) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box: area fraction U(scale), log-uniform aspect ratio, uniform position; after
    ATTEMPTS failures, the largest centred box whose ratio is clamped to `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def crop_resize(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    """Cut `box` out of `image` and resize it to size x size."""
    left, top, w, h = box
    return image.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BILINEAR)


def resize_frame(image: Image.Image, size: int, resize: str = "square") -> Image.Image:
    """The first resize of a frame: square = Resize((size, size)) (squashes, the original); shorter_side =
    Resize(size) (keeps the aspect ratio)."""
    if resize == "square":
        return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BILINEAR)
    if resize == "shorter_side":
        return resize_shorter(image, size)
    raise ValueError(f"resize must be 'square' or 'shorter_side', found {resize!r}")


def zoom(image: Image.Image, crop: int, size: int) -> Image.Image:
    """CenterCrop(crop) -> Resize((size, size)). A crop larger than the image zooms out: the image is pasted in the
    centre of a black crop x crop canvas (at the CenterCrop offsets), then resized."""
    width, height = image.size
    if crop == width == height == size:
        return image  # the whole image at its size: nothing to do
    if crop <= width and crop <= height:
        return crop_resize(image, center_crop_box(width, height, crop), size)
    canvas = Image.new("RGB", (max(crop, width), max(crop, height)))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return crop_resize(canvas, center_crop_box(canvas.width, canvas.height, crop), size)


def multi_crop(image: Image.Image, crops: list[int], size: int, resize: str = "shorter_side") -> list[Image.Image]:
    """One copy per crop side c: resize -> CenterCrop(c) -> Resize(size x size)."""
    base = resize_frame(image, size, resize)
    return [zoom(base, crop, size) for crop in crops]


def prepare_frame(image: Image.Image, size: int, resize: str = "square", rng: np.random.Generator | None = None,
                  scale_min: float = 1.0, centre_crop: int = 0) -> Image.Image:
    """A decoded frame -> the image its crops are cut from (size x size for square resize).

    rng given and scale_min < 1 (training augmentation of this project): RandomResizedCrop(size, scale
    [scale_min, 1]) of the frame. Otherwise the configured resize; centre_crop > 0 then magnifies it:
    CenterCrop(centre_crop) -> Resize(size) (the magnification analyses and experiments).
    """
    if rng is not None and scale_min < 1.0:
        image = crop_resize(image, sample_resized_crop(rng, *image.size, (scale_min, 1.0)), size)
    else:
        image = resize_frame(image, size, resize)
    if centre_crop:
        image = zoom(image, centre_crop, size)
    return image


def frame_views(image: Image.Image, size: int, crops: list[int], rng: np.random.Generator | None = None,
                scale_min: float = 1.0, magnification_delta: int = 0, resize: str = "square") -> list[torch.Tensor]:
    """The normalised [3, size, size] copies of one frame, one per crop (prepare_frame, then zoom)."""
    base = prepare_frame(image, size, resize, rng, scale_min, size - magnification_delta if magnification_delta else 0)
    return [to_normalised_tensor(zoom(base, crop, size), size) for crop in crops]
