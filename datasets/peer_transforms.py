"""The peers' own preprocessing, from a frame and its head boxes in PIXELS to their networks' inputs: Gaze-LLE's
`get_transform` and head boxes (models/gazelle.py), Chong et al.'s demo.py (models/chong.py).

Both normalise with the ImageNet statistics. What makes them differ from this project's `model_inputs`
(datasets/transforms.py) and from each other is where their numbers come from:
- Gaze-LLE converts the image to float, normalises it, then resizes the float tensor to 448 x 448 (bilinear,
  antialiased); its head boxes are the pixel boxes divided by the image size (clipped to it, as its data preparation
  does), and the head map rounds them on the 32 x 32 token grid (`gazelle_head_maps`).
- Chong et al.'s demo.py widens the head box by 10 % on each side, one edge after the other (the right edge moves by
  0.1 of the already widened box, likewise the bottom), crops the face with PIL's float box (rounded, black beyond
  the frame: the box is not clamped), resizes frame and face to 224 x 224 with PIL's bilinear filter, and marks the
  head channel on the cells from int(box / size * 224) (truncated, clipped to 0..223; the end excluded).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

GAZELLE_SIZE = 448
CHONG_SIZE = 224
CHONG_WIDEN = 0.1
PixelBox = Sequence[float]  # x_min, y_min, x_max, y_max in pixels of the frame


def gazelle_image(image: Image.Image, size: int = GAZELLE_SIZE) -> torch.Tensor:
    """Gaze-LLE's `get_transform`: [3, size, size] float32, normalised at the frame's size, then resized."""
    pixels = TF.normalize(TF.to_tensor(image.convert("RGB")), IMAGENET_MEAN, IMAGENET_STD)
    return TF.resize(pixels, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def gazelle_head_boxes(head_boxes: Sequence[PixelBox | None], image_size: tuple[int, int]
                       ) -> list[tuple[float, float, float, float] | None]:
    """Pixel head boxes -> Gaze-LLE's normalised ones (x / width, y / height, in float64, clipped to [0, 1]);
    None (a person without a head box) stays None."""
    width, height = image_size
    boxes = []
    for box in head_boxes:
        if box is None:
            boxes.append(None)
            continue
        x_min, y_min, x_max, y_max = (float(value) for value in box)
        boxes.append(tuple(min(max(value, 0.0), 1.0) for value in
                           (x_min / width, y_min / height, x_max / width, y_max / height)))
    return boxes


def gazelle_head_maps(head_boxes: Sequence[Sequence[float] | None], side: int = GAZELLE_SIZE // 14) -> torch.Tensor:
    """[N, side, side] float32: 1 on the token-grid cells of each NORMALISED head box, rows round(y_min * side) ..
    round(y_max * side) - 1 and likewise the columns (Python's round, half to even), all 0 for a person without a
    head box (None): Gaze-LLE's `get_input_head_maps`. Edges are clipped to [0, 1] first (Gaze-LLE's data
    preparation keeps boxes inside the image; a negative edge would index from the far side of the grid)."""
    maps = torch.zeros(len(head_boxes), side, side)
    for person, box in enumerate(head_boxes):
        if box is None:
            continue
        if len(box) != 4:
            raise ValueError(f"head box {person}: expected (x_min, y_min, x_max, y_max) normalised to the image, got "
                             f"{box!r}")
        x_min, y_min, x_max, y_max = (round(min(max(float(value), 0.0), 1.0) * side) for value in box)
        maps[person, y_min:y_max, x_min:x_max] = 1
    return maps


def gazelle_inputs(image: Image.Image, head_boxes: Sequence[PixelBox | None],
                   side: int = GAZELLE_SIZE // 14) -> dict:
    """One frame's inputs for models.gazelle: "image" [1, 3, 448, 448] (encoded once for all its people),
    "head_map" [N, side, side] (`gazelle_head_maps`) and "head_boxes" (normalised, or None)."""
    boxes = gazelle_head_boxes(head_boxes, image.size)
    return {"image": gazelle_image(image, side * 14)[None], "head_map": gazelle_head_maps(boxes, side),
            "head_boxes": boxes}


def chong_widened_box(head_box: PixelBox) -> tuple[float, float, float, float]:
    """demo.py's widening, in its order: left, then right by 0.1 of the widened width, then top, then bottom."""
    left, top, right, bottom = (float(value) for value in head_box)
    left -= (right - left) * CHONG_WIDEN
    right += (right - left) * CHONG_WIDEN
    top -= (bottom - top) * CHONG_WIDEN
    bottom += (bottom - top) * CHONG_WIDEN
    return left, top, right, bottom


def _chong_transform(image: Image.Image) -> torch.Tensor:
    """demo.py's transform: PIL bilinear resize to 224 x 224, to float, ImageNet normalisation."""
    resized = TF.resize(image, [CHONG_SIZE, CHONG_SIZE], interpolation=TF.InterpolationMode.BILINEAR)
    return TF.normalize(TF.to_tensor(resized), IMAGENET_MEAN, IMAGENET_STD)


def chong_head_channel(box: PixelBox, image_size: tuple[int, int], size: int = CHONG_SIZE) -> torch.Tensor:
    """[1, size, size] float32: 1 on rows int(y_min / height * size) .. int(y_max / height * size) - 1 and the same
    columns, the indices clipped to 0..size - 1 (Chong's get_head_box_channel)."""
    width, height = image_size
    x_min, y_min, x_max, y_max = box
    cells = (np.array([x_min / width, y_min / height, x_max / width, y_max / height]) * size).astype(int)
    x_min, y_min, x_max, y_max = np.clip(cells, 0, size - 1)
    channel = torch.zeros(1, size, size)
    channel[0, y_min:y_max, x_min:x_max] = 1
    return channel


def chong_inputs(image: Image.Image, head_boxes: Sequence[PixelBox]) -> dict:
    """One frame's inputs for models.chong, one row per person, as demo.py makes them: "image" [N, 3, 224, 224] (the
    frame, the same for every person), "head_channel" [N, 1, 224, 224], "face" [N, 3, 224, 224], and "head_boxes"
    (the widened pixel boxes). Chong's models need a head box for every person."""
    image = image.convert("RGB")
    if any(box is None for box in head_boxes):
        raise ValueError("Chong et al.'s models need a head box for every person (their face crop and head channel "
                         "come from it)")
    boxes = [chong_widened_box(box) for box in head_boxes]
    frame = _chong_transform(image)
    return {"image": frame.expand(len(boxes), -1, -1, -1).contiguous(),
            "head_channel": torch.stack([chong_head_channel(box, image.size) for box in boxes]),
            "face": torch.stack([_chong_transform(image.crop(box)) for box in boxes]), "head_boxes": boxes}
