"""Inputs of prediction: images, frame folders, videos and head boxes (typed on the command line or read from
VideoAttentionTarget-style head-box files), each checked with errors that name the file and line.

Head boxes are (x_min, y_min, x_max, y_max) in PIXELS of the image they belong to, in the continuous frame of
datasets/transforms.py (the image covers [0, width] x [0, height]).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.image_files import rgb_image, too_many_pixels
from datasets.text_files import read_text
from datasets.transforms import clamp_box

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
HEAD_BOX_FIELDS = ("frame", "xmin", "ymin", "xmax", "ymax")
VIDEO_FRAME_NAME = "{:08d}.jpg"  # frame k (1-based) of a video, as `ffmpeg -i video.mp4 %08d.jpg` names it


@dataclass(frozen=True)
class HeadBox:
    """One person's head box in one image: `box` in pixels; `where` says where it was given (for error messages)."""

    person: str
    box: np.ndarray  # (4,) x_min, y_min, x_max, y_max, pixels
    where: str
    score: float | None = None  # the detector's confidence for a detected box; None for a given one


def read_image(path: str | Path) -> Image.Image:
    """The RGB image at `path` as it is displayed: turned upright by its EXIF orientation (a phone photo taken on
    its side is stored sideways), 16-bit images scaled to 8 bits (datasets.image_files.rgb_image); head boxes are
    pixels of this upright image. A missing or unreadable file, one declaring more pixels than the
    decompression-bomb limit, or a 32-bit / float image is an error naming it (never a blank image)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image; pass a folder of frames with --frames")
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as opened:
            problem = too_many_pixels(opened.size)  # PIL itself only warns up to twice its limit
            if problem is not None:
                raise ValueError(f"{path}: {problem}")
            return rgb_image(opened, path, "image", orientation=True)  # decodes the whole file: a truncated one fails
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused as a possible decompression bomb ({error}); raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if it is genuine") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as error:  # Pillow's decoders raise all four
        raise ValueError(f"{path}: cannot be read as an image ({type(error).__name__}: {error})") from None


def parse_head_box(text: str, person: str, where: str) -> HeadBox:
    """A head box typed as "x_min,y_min,x_max,y_max" (pixels)."""
    fields = text.split(",")
    if len(fields) != 4:
        raise ValueError(f"{where}: expected a head box x_min,y_min,x_max,y_max in pixels, found {text!r}")
    return HeadBox(person, np.array([_number(f, name, where) for f, name in zip(fields, HEAD_BOX_FIELDS[1:])]), where)


def read_head_box_file(path: str | Path, person: str | None = None) -> dict[str, HeadBox]:
    """One person's head boxes from a VideoAttentionTarget-format file: one `frame,xmin,ymin,xmax,ymax` line per
    frame (pixels, no header; blank lines skipped). Returns {frame name: HeadBox}; the person is named after the file
    (`person1.txt` -> "person1") unless `person` is given. A malformed line or a frame listed twice is an error naming
    the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head-box file not found: {path}")
    person = person or path.stem
    boxes: dict[str, HeadBox] = {}
    for line_number, line in enumerate(read_text(path, "head-box file").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != len(HEAD_BOX_FIELDS):
            raise ValueError(f"{where}: expected {len(HEAD_BOX_FIELDS)} comma-separated fields "
                             f"({','.join(HEAD_BOX_FIELDS)}, pixels), found {len(fields)}: {line!r}")
        frame = fields[0]
        if not frame:
            raise ValueError(f"{where}: field 'frame' is empty")
        if frame in boxes:
            raise ValueError(f"{where}: frame {frame!r} is listed twice (first at {boxes[frame].where})")
        box = np.array([_number(value, name, where) for value, name in zip(fields[1:], HEAD_BOX_FIELDS[1:])])
        boxes[frame] = HeadBox(person, box, where)
    if not boxes:
        raise ValueError(f"{path}: no head boxes (expected lines {','.join(HEAD_BOX_FIELDS)})")
    return boxes


def checked_head_box(head_box: HeadBox, image_size: tuple[int, int], image_name: str) -> np.ndarray:
    """The box clamped to the image, as the datasets clamp annotated boxes. An inverted or empty box, or one with
    no area inside the image, is an error naming where the box was given, the image and its size."""
    width, height = image_size
    x_min, y_min, x_max, y_max = head_box.box
    if x_min >= x_max or y_min >= y_max:
        raise ValueError(f"{head_box.where}: head box {_format(head_box.box)} of {head_box.person} is inverted or "
                         "empty: expected x_min < x_max and y_min < y_max (pixels)")
    if max(width, height) > 2 and 0 <= x_min and 0 <= y_min and x_max <= 1 and y_max <= 1:  # no pixel box is < 1 px
        pixels = head_box.box * np.array([width, height, width, height])
        raise ValueError(f"{head_box.where}: head box {_format(head_box.box)} of {head_box.person} looks normalised "
                         f"to [0, 1]; head boxes are in pixels: in the {width}x{height} image {image_name} that box "
                         f"is {_format(pixels)}")
    if x_max <= 0 or y_max <= 0 or x_min >= width or y_min >= height:
        raise ValueError(f"{head_box.where}: head box {_format(head_box.box)} of {head_box.person} lies outside the "
                         f"{width}x{height} image {image_name} (x in [0, {width}], y in [0, {height}] pixels)")
    return clamp_box(head_box.box, image_size)


def natural_key(name: str) -> tuple:
    """Sort key that orders "frame2.jpg" before "frame10.jpg" (digits compared as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself: frames per second, frame count (None when the container does not say)
    and frame size in pixels."""

    fps: float
    frames: int | None
    width: int
    height: int


def video_info(path: str | Path) -> VideoInfo:
    """The frame rate, frame count and size of the first video stream of `path` (read with PyAV)."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = stream.frames or None
        if frames is None and stream.duration and rate:
            frames = round(float(stream.duration * stream.time_base) * float(rate))
        return VideoInfo(float(rate) if rate else 0.0, frames, stream.codec_context.width,
                         stream.codec_context.height)


def video_frames(path: str | Path, start: float = 0.0, end: float | None = None,
                 every_nth_frame: int = 1) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB image) of the frames of a video (MP4, MOV, AVI, MKV, GIF, ... whatever FFmpeg reads, through
    PyAV), named VIDEO_FRAME_NAME by their 1-based position in the video (as ffmpeg's image2 muxer numbers extracted
    frames, so head-box files written for extracted frames apply unchanged). Frames are turned upright by the
    video's display matrix (the orientation a phone records), as ffmpeg turns the frames it extracts.

    Only frames whose time lies in [start, end) seconds are returned, the first of them and then every
    `every_nth_frame`-th one. Frames before `start` are decoded and dropped (no seeking, so frame numbers stay exact).
    """
    if every_nth_frame < 1:
        raise ValueError(f"--every_nth_frame: expected an integer >= 1, found {every_nth_frame}")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"--start / --end: expected 0 <= start < end seconds, found start {start}, end {end}")
    with _open_video(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        taken = 0
        try:
            for index, frame in enumerate(container.decode(stream), start=1):
                time = frame.time if frame.time is not None else (index - 1) / rate if rate else 0.0
                if end is not None and time >= end - 1e-9:
                    break
                if time < start - 1e-9:
                    continue
                taken += 1
                if (taken - 1) % every_nth_frame == 0:
                    yield VIDEO_FRAME_NAME.format(index), upright(frame.to_image().convert("RGB"), frame.rotation)
        except av_errors() as error:
            raise ValueError(f"{path}: cannot be read as a video: decoding failed "
                             f"({type(error).__name__}: {error})") from None


def upright(image: Image.Image, rotation: float) -> Image.Image:
    """A decoded video frame as it is displayed: the container's display matrix (a phone video's orientation) turns
    it `rotation` degrees counter-clockwise (PyAV's VideoFrame.rotation); multiples of 90 are exact transposes."""
    quarter = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, -90: Image.Transpose.ROTATE_270}
    rotation = round(float(rotation or 0)) % 360
    rotation = rotation - 360 if rotation > 180 else rotation  # in (-180, 180]
    if rotation == 0:
        return image
    if rotation in quarter:
        return image.transpose(quarter[rotation])
    return image.rotate(rotation, resample=Image.Resampling.BILINEAR, expand=True)


def _open_video(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    import av

    try:
        container = av.open(str(path))
    except av_errors() as error:
        raise ValueError(
            f"{path}: cannot be read as a video ({type(error).__name__}: {error}); PyAV (FFmpeg) reads MP4, MOV, AVI, "
            "MKV, GIF and most other formats, or extract the frames first (`ffmpeg -i VIDEO DIR/%08d.jpg`) and pass "
            "--frames DIR") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: holds no video stream")
    return container


def av_errors() -> tuple[type[BaseException], ...]:
    """The exceptions PyAV raises for unreadable or corrupt files."""
    import av

    return (av.error.FFmpegError, UnicodeDecodeError)


def _number(value: str, name: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: field '{name}' should be a number (pixels), found {value.strip()!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: field '{name}' should be a finite number (pixels), found {value.strip()!r}")
    return number


def _format(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
