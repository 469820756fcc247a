"""What prediction writes: overlay images, the table of predictions (CSV and JSON) and the animation of a sequence.

Overlay: the heatmap (each person's map stretched to [0, 1], bilinearly resized to the image) blended over the
image in the "jet" colour map, the head box, a line from the eye (the head-box centre) to the predicted gaze point,
and the in/out probability. Coordinates in the tables: `gaze_x`, `gaze_y` normalised to [0, 1] (the argmax
convention of eval/metrics.py), `*_px` in pixels of the input image (normalised x width, y height).
"""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from inference import ANIMATION_FORMATS
from inference.predictor import PersonPrediction

COLOURS = ((255, 255, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0), (255, 255, 0))
HEATMAP_OPACITY = 0.6  # opacity of the colour map where a person's heatmap is at its maximum
JET = colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32) * 255.0  # 256-entry RGB lookup table
CSV_FIELDS = ("frame", "person", "image_width", "image_height", "head_x_min", "head_y_min", "head_x_max",
              "head_y_max", "eye_x_px", "eye_y_px", "gaze_x", "gaze_y", "gaze_x_px", "gaze_y_px", "inout", "overlay")


def draw_overlay(image: Image.Image, predictions: Sequence[PersonPrediction]) -> Image.Image:
    """The image (same size) with every person's prediction drawn; their heatmaps are combined by maximum."""
    width, height = image.size
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if predictions:
        heat = np.max([_resized_heatmap(p.heatmap, image.size) for p in predictions], axis=0)
        colour = JET[np.round(heat * 255).astype(np.uint8)]
        alpha = HEATMAP_OPACITY * heat[..., None]
        base = base * (1.0 - alpha) + colour * alpha
    result = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    line = max(2, round(min(width, height) / 200))
    font = ImageFont.load_default(size=max(12, round(min(width, height) / 30)))
    for index, prediction in enumerate(predictions):
        colour = COLOURS[index % len(COLOURS)]
        gaze = np.array(prediction.gaze_point) * (width, height)
        eye = prediction.eye_point
        draw.rectangle([float(v) for v in prediction.head_box], outline=colour, width=line)
        draw.line([float(eye[0]), float(eye[1]), float(gaze[0]), float(gaze[1])], fill=colour, width=line)
        radius = 3 * line
        draw.ellipse([gaze[0] - radius, gaze[1] - radius, gaze[0] + radius, gaze[1] + radius], fill=colour,
                     outline=(0, 0, 0))
        label = f"{prediction.person} in-frame {prediction.inout:.2f}"
        x, y = float(prediction.head_box[0]), float(prediction.head_box[1])
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        above = y - (bottom - top) - 2 * line
        y = above if above >= 0 else float(prediction.head_box[3]) + line  # below the box when no room above
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        draw.rectangle([left - line, top - line, right + line, bottom + line], fill=(0, 0, 0))
        draw.text((x, y), label, fill=colour, font=font)
    return result


def _resized_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The heatmap stretched to [0, 1] (its minimum to 0, its maximum to 1, so the shape of a flat map shows too) and
    bilinearly resized to `size`."""
    heat = np.asarray(heatmap, dtype=np.float32)
    spread = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / spread if spread > 0 else np.zeros_like(heat)
    resized = np.asarray(Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR))
    return np.clip(resized, 0.0, 1.0)


def prediction_row(frame: str, image_size: tuple[int, int], prediction: PersonPrediction, overlay: str) -> dict:
    """One CSV / JSON row: pixels for the boxes and the `_px` points, normalised `gaze_x`, `gaze_y`."""
    width, height = image_size
    gaze_x, gaze_y = prediction.gaze_point
    x_min, y_min, x_max, y_max = (float(v) for v in prediction.head_box)
    return {"frame": frame, "person": prediction.person, "image_width": width, "image_height": height,
            "head_x_min": x_min, "head_y_min": y_min, "head_x_max": x_max, "head_y_max": y_max,
            "eye_x_px": float(prediction.eye_point[0]), "eye_y_px": float(prediction.eye_point[1]),
            "gaze_x": gaze_x, "gaze_y": gaze_y, "gaze_x_px": gaze_x * width, "gaze_y_px": gaze_y * height,
            "inout": prediction.inout, "overlay": overlay}


def write_tables(out_dir: Path, rows: list[dict], summary: dict) -> None:
    """`predictions.csv` (one row per person per frame) and `predictions.json` (the run's settings and the rows)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "predictions.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    document = {**summary, "coordinates": (
        "head boxes, eye and *_px points in pixels of the input image; gaze_x, gaze_y normalised to [0, 1]: the "
        "top-left corner (col / W, row / H) of the heatmap's argmax cell, as in the benchmarks' evaluation; the eye "
        "is the head-box centre; inout is the probability that the gaze target is inside the frame"),
        "predictions": rows}
    (out_dir / "predictions.json").write_text(json.dumps(document, indent=2) + "\n")


def check_animation_format(kind: str, fps: float) -> None:
    """Refuse an animation format this machine cannot write, or a frame rate that is not positive, before any
    prediction is made."""
    if kind not in ANIMATION_FORMATS:
        raise ValueError(f"animation: expected one of {ANIMATION_FORMATS}, found {kind!r}")
    if kind != "none" and not fps > 0:
        raise ValueError(f"fps: expected a positive number of frames per second, found {fps}")
    if kind == "mp4" and importlib.util.find_spec("av") is None:
        raise RuntimeError("animation 'mp4' needs PyAV (`pip install av`), which is not installed here; "
                           "use --animation gif (Pillow, always available)")


def write_animation(path: Path, frames: list[Image.Image], fps: float) -> None:
    """An animated GIF (Pillow) or an MP4 (H.264 through PyAV, see `check_animation_format`), by `path`'s suffix."""
    if not frames:
        raise ValueError(f"{path}: no frames to animate")
    check_animation_format(path.suffix.lstrip("."), fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    elif path.suffix == ".mp4":
        import imageio.v3 as iio

        # H.264 with yuv420p needs even sides; frames are cropped by at most one pixel.
        width, height = frames[0].size
        even = [np.asarray(frame)[: height - height % 2, : width - width % 2] for frame in frames]
        iio.imwrite(path, np.stack(even), plugin="pyav", codec="libx264", fps=fps)
    else:
        raise ValueError(f"{path}: expected a .gif or .mp4 file name")


def animation_frame(overlay: Image.Image, width: int) -> Image.Image:
    """An overlay scaled down to `width` pixels (aspect kept) for the animation; 0 or a larger width keeps it."""
    if width <= 0 or overlay.width <= width:
        return overlay
    return overlay.resize((width, max(1, round(overlay.height * width / overlay.width))), Image.Resampling.LANCZOS)
