"""What prediction writes: overlay images, the table of predictions (CSV and JSON) and the animation of a sequence,
and the folder they go to (`PredictionFolder`: new, empty, or an earlier prediction replaced on request; written whole).

Overlay: the heatmap (each person's map stretched to [0, 1], bilinearly resized to the image) blended over the
image in the "jet" colour map, the head box, a line from the eye (the head-box centre) to the predicted gaze point,
and the in/out probability. Coordinates in the tables: `gaze_x`, `gaze_y` normalised to [0, 1] (the argmax
convention of eval/metrics.py), `*_px` in pixels of the input image (normalised x width, y height).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from engine.run_folder import inspect_folder
from inference import ANIMATION_FORMATS
from inference.predictor import PersonPrediction

COLOURS = ((255, 255, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0), (255, 255, 0))
HEATMAP_OPACITY = 0.6  # opacity of the colour map where a person's heatmap is at its maximum
JET = colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32) * 255.0  # 256-entry RGB lookup table
CSV_FIELDS = ("frame", "person", "image_width", "image_height", "head_x_min", "head_y_min", "head_x_max",
              "head_y_max", "head_score", "eye_x_px", "eye_y_px", "gaze_x", "gaze_y", "gaze_x_px", "gaze_y_px",
              "heatmap_peak", "inout", "yaw", "pitch", "gaze3d_uncertainty", "gaze3d_x", "gaze3d_y", "gaze3d_z",
              "overlay")
GAZE3D_FIELDS = ("yaw", "pitch", "gaze3d_uncertainty", "gaze3d_x", "gaze3d_y", "gaze3d_z")
TRACK_FOLDER = "tracks"
OVERLAY_FOLDER = "overlays"
# Everything predict.py writes into its --out folder: a folder holding anything else is never written into.
PREDICTION_ENTRIES = ("predictions.csv", "predictions.json", OVERLAY_FOLDER, TRACK_FOLDER,
                      *(f"animation.{kind}" for kind in ANIMATION_FORMATS if kind != "none"))
GAZE3D_ARROW = 2.0  # length of a 3D gaze arrow whose direction lies in the image plane, in head-box widths


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
        if prediction.gaze3d is not None:
            _draw_gaze3d_arrow(draw, prediction, line)
        label = f"{prediction.person} in-frame {prediction.inout:.2f}"
        x, y = float(prediction.head_box[0]), float(prediction.head_box[1])
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        above = y - (bottom - top) - 2 * line
        y = above if above >= 0 else float(prediction.head_box[3]) + line  # below the box when no room above
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        draw.rectangle([left - line, top - line, right + line, bottom + line], fill=(0, 0, 0))
        draw.text((x, y), label, fill=colour, font=font)
    return result


def _draw_gaze3d_arrow(draw: ImageDraw.ImageDraw, prediction: PersonPrediction, line: int) -> None:
    """The 3D gaze direction projected on the image from the eye: Gaze360's +x (left as seen from the camera) and
    +y (up) become image -x and -y; a direction towards or away from the camera draws short."""
    gaze_x, gaze_y, _ = prediction.gaze3d.vector
    length = GAZE3D_ARROW * float(prediction.head_box[2] - prediction.head_box[0])
    start = np.asarray(prediction.eye_point, dtype=np.float64)
    end = start + length * np.array([-gaze_x, -gaze_y])
    colour = (255, 40, 40)
    draw.line([*start, *end], fill=colour, width=line)
    direction = end - start
    norm = float(np.hypot(*direction))
    if norm > 1e-6:  # the arrow head: two strokes at +-25 degrees back from the tip
        unit = direction / norm
        size = min(norm, 6.0 * line)
        for angle in (0.44, -0.44):
            rotated = np.array([unit[0] * np.cos(angle) - unit[1] * np.sin(angle),
                                unit[0] * np.sin(angle) + unit[1] * np.cos(angle)])
            draw.line([*end, *(end - size * rotated)], fill=colour, width=line)


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
    row = {"frame": frame, "person": prediction.person, "image_width": width, "image_height": height,
           "head_x_min": x_min, "head_y_min": y_min, "head_x_max": x_max, "head_y_max": y_max,
           "head_score": "" if prediction.head_score is None else prediction.head_score,
           "eye_x_px": float(prediction.eye_point[0]), "eye_y_px": float(prediction.eye_point[1]),
           "gaze_x": gaze_x, "gaze_y": gaze_y, "gaze_x_px": gaze_x * width, "gaze_y_px": gaze_y * height,
           "heatmap_peak": prediction.heatmap_peak, "inout": prediction.inout, "overlay": overlay}
    gaze3d = prediction.gaze3d
    values = () if gaze3d is None else (gaze3d.yaw, gaze3d.pitch, gaze3d.uncertainty, *map(float, gaze3d.vector))
    row.update(zip(GAZE3D_FIELDS, values or ("",) * len(GAZE3D_FIELDS)))
    return row


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


def write_track_tables(out_dir: Path, rows: list[dict]) -> list[str]:
    """tracks/<person>.csv: the rows of each person (track), in frame order; returns the files' relative paths."""
    folder = out_dir / TRACK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    people = list(dict.fromkeys(row["person"] for row in rows))
    for person in people:
        with open(folder / f"{person}.csv", "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(row for row in rows if row["person"] == person)
    return [f"{TRACK_FOLDER}/{person}.csv" for person in people]


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


class AnimationWriter:
    """Writes the annotated frames of a sequence as they come: an MP4 (H.264, yuv420p, through PyAV; frames are
    encoded one by one, so a long video never sits in memory) or an animated GIF (Pillow; frames kept until
    `close`), chosen by `path`'s suffix. Frames are written to a temporary file renamed on `close`."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        check_animation_format(self.path.suffix.lstrip("."), fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames: list[Image.Image] = []
        self.container = self.stream = None
        self.count = 0

    def write(self, frame: Image.Image) -> None:
        self.count += 1
        if self.path.suffix == ".gif":
            self.frames.append(frame)
            return
        import av

        # H.264 with yuv420p needs even sides; frames are cropped by at most one pixel.
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        if self.container is None:
            self.container = av.open(str(self.temporary), "w", format="mp4")
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        pixels = np.ascontiguousarray(np.asarray(frame.convert("RGB"))[:height, :width])
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            self.container.mux(packet)

    def abort(self) -> None:
        """Stop after an error: the partial file is removed, nothing is left at `path`."""
        if self.container is not None:
            self.container.close()
        self.temporary.unlink(missing_ok=True)

    def close(self) -> None:
        if not self.count:
            raise ValueError(f"{self.path}: no frames to animate")
        if self.path.suffix == ".gif":
            self.frames[0].save(self.temporary, format="GIF", save_all=True, append_images=self.frames[1:],
                                duration=round(1000 / self.fps), loop=0)
        else:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        self.temporary.replace(self.path)


def write_animation(path: Path, frames: list[Image.Image], fps: float) -> None:
    """An animated GIF or an MP4 of `frames` (see AnimationWriter)."""
    if not frames:
        raise ValueError(f"{path}: no frames to animate")
    if Path(path).suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: expected a .gif or .mp4 file name")
    writer = AnimationWriter(path, fps)
    for frame in frames:
        writer.write(frame)
    writer.close()


def animation_frame(overlay: Image.Image, width: int) -> Image.Image:
    """An overlay scaled down to `width` pixels (aspect kept) for the animation; 0 or a larger width keeps it."""
    if width <= 0 or overlay.width <= width:
        return overlay
    return overlay.resize((width, max(1, round(overlay.height * width / overlay.width))), Image.Resampling.LANCZOS)


class PredictionFolder:
    """The --out folder of one prediction. `open()` refuses a folder that is not new or empty, unless `overwrite` and
    it holds only an earlier prediction (PREDICTION_ENTRIES); the prediction is then written into `path`, a hidden
    folder beside it, and `commit()` puts it in place (replacing the earlier one), so a failed or stopped prediction
    leaves the folder as it was and an earlier prediction's people never sit beside the new ones. `close()` removes
    what an uncommitted prediction wrote."""

    def __init__(self, out_dir: str | Path, overwrite: bool = False):
        self.out = Path(out_dir)
        self.overwrite = overwrite
        self.path = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.opened = False

    def open(self) -> Path:
        self.check()
        try:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)
        except OSError as error:
            raise ValueError(f"--out {self.out}: cannot write there ({error.strerror or error}): give a folder this "
                             "job may write into") from error
        self.opened = True
        return self.path

    def check(self) -> None:
        """Raise ValueError (one line: what the folder holds, what to do) unless the prediction may go to `out`."""
        out = self.out
        if not out.exists():
            return
        if not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder: give a new or empty folder")
        entries = sorted(entry.name for entry in out.iterdir())
        foreign = [name for name in entries if name not in PREDICTION_ENTRIES]
        if foreign:
            kind = inspect_folder(out).kind
            what = {"run": "a training run", "results": "an evaluation's results"}.get(kind, "files predict.py did "
                                                                                               "not write")
            raise ValueError(f"--out {out} holds {what} ({', '.join(foreign[:6])}): predict.py writes only into a new "
                             "or empty folder, or over an earlier prediction (--overwrite); nothing there is "
                             "overwritten: choose another --out")
        if entries and not self.overwrite:
            raise ValueError(f"--out {out} holds an earlier prediction ({', '.join(entries)}): pass --overwrite to "
                             "replace it (it is removed once the new prediction is complete), or choose another --out")

    def commit(self) -> None:
        """Put the complete prediction in place of `out` (an empty folder, or with `overwrite` an earlier
        prediction)."""
        replaced = None
        if self.out.is_dir() and any(self.out.iterdir()):
            self.check()  # still only an earlier prediction (another job may have written there meanwhile)
            replaced = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
            os.rename(self.out, replaced)
        try:
            os.replace(self.path, self.out)  # also over an empty folder
        except OSError:  # a job wrote into `out` meanwhile: keep both, under a new name
            kept = self.out.with_name(f"{self.out.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            os.rename(self.path, kept)
            raise ValueError(f"--out {self.out} was written by another job meanwhile; this prediction is in {kept}")
        finally:
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
        self.opened = False

    def close(self) -> None:
        if self.opened:
            shutil.rmtree(self.path, ignore_errors=True)
            self.opened = False
